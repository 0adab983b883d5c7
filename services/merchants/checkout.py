"""QR checkout: spending a driver's Nova at a merchant, exactly once."""

from __future__ import annotations

from services.common.interceptors import Access
from services.merchants.records import Resources

ACCESS: dict[str, Access] = {}


class CheckoutRpcs(Resources):
    """Filled next."""
