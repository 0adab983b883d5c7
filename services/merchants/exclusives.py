"""Exclusive offers: a driver at a charger starts a merchant's offer (150 m, 60 min), verifies the visit at the
merchant (a code staff check), completes it; admins cancel; merchants configure their offers."""

from __future__ import annotations

from services.common.interceptors import Access
from services.merchants.records import Resources

ACCESS: dict[str, Access] = {}


class ExclusiveRpcs(Resources):
    """Filled by the exclusive-offers work of the merchants issue."""
