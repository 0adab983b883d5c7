"""The MerchantsService servicer, composed of its RPC groups — one module each, all sharing `Resources`:

catalog.py     merchant records, charger links, "while you charge", merchant details, scanned QR codes
checkout.py    Nova redemptions at checkout (exactly once, consistent with the ledger)
exclusives.py  exclusive offers: activate, verify, complete, cancel; the merchant's offer configuration
portal.py      the owner's reports, share card and QR sign; signed preview links
funnel.py      the acquisition funnel: find a business on Google Places, its preview, a claim of it
onboarding.py  Square OAuth and the recommended perk
favorites.py   drivers' favorite stores and chargers, amenity votes
claims.py      who may claim a store, for accounts' claim link and the portal's Google sign-in
"""

from __future__ import annotations

from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc

from services.common.interceptors import Access
from services.merchants import catalog, checkout, claims, exclusives, favorites, funnel, onboarding, portal
from services.merchants.catalog import CatalogRpcs
from services.merchants.checkout import CheckoutRpcs
from services.merchants.claims import ClaimRpcs
from services.merchants.exclusives import ExclusiveRpcs
from services.merchants.favorites import FavoriteRpcs
from services.merchants.funnel import FunnelRpcs
from services.merchants.onboarding import SquareRpcs
from services.merchants.portal import PortalRpcs

SERVICE_NAME = merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].full_name
METHODS = tuple(m.name for m in merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].methods)

# Each group declares the rule of each of its RPCs; tests/merchants/test_catalog.py checks every RPC has exactly one.
GROUPS = (catalog, checkout, exclusives, portal, onboarding, favorites, claims, funnel)
ACCESS: dict[str, Access] = {name: rule for group in GROUPS for name, rule in group.ACCESS.items()}


class MerchantsApi(
    CatalogRpcs,
    CheckoutRpcs,
    ExclusiveRpcs,
    PortalRpcs,
    SquareRpcs,
    FavoriteRpcs,
    ClaimRpcs,
    FunnelRpcs,
    merchants_pb2_grpc.MerchantsServiceServicer,
):
    """Every RPC of MerchantsService; the resources come from `Resources` (records.py)."""
