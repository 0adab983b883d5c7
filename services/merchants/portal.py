"""The merchant portal's reads (owner only) and the merchant's artwork; HMAC-signed preview links."""

from __future__ import annotations

from services.common.interceptors import Access
from services.merchants.records import Resources

ACCESS: dict[str, Access] = {}


class PortalRpcs(Resources):
    """Filled by the portal work of the merchants issue."""
