"""Square onboarding: OAuth connect and callback with a one-time CSRF state, tokens encrypted at rest, the
average order value → recommended perk."""

from __future__ import annotations

from services.common.interceptors import Access
from services.merchants.records import Resources

ACCESS: dict[str, Access] = {}


class SquareRpcs(Resources):
    """Filled by the Square onboarding work of the merchants issue."""
