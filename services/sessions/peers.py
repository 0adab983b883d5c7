"""The other Nerava services as the sessions cores see them: each call through its stub, its answer as a plain
value and its gRPC errors mapped once to this service's reasons (or to "do without", where a core shows its own
values without the peer's), so that no core imports grpc or a peer's messages.

incentives  each ended session's grant (the driver's session reads), each charger's best live reward (the map)
merchants   the stores linked to each charger (the map, the charger sheet), where a store is (EV codes)
ledger      the driver's wallet (the account card)
accounts    the driver linked to a Tesla account (Tesla sign-in)

The poll's grant read (polling.py, the hot path) and the hand-off of an ended session to incentives (workers.py's
EvaluationHandOff, an outbox relay handler) call their stubs themselves.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Sequence

import grpc
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc
from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc
from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc

from services.common.errors import Unavailable
from services.sessions.chargers import ChargerRow
from services.sessions.reasons import Reason

log = logging.getLogger(__name__)

MAX_GRANTS_ASKED = 100  # incentives' BatchGetSessionGrants takes this many sessions at once
MERCHANT_POSITION_TIMEOUT_S = 2.0  # an EV code does not wait longer for the merchant check


@dataclasses.dataclass(frozen=True)
class Grant:
    """What a session earned, as incentives holds it now (its kind and status: the incentives contract's values,
    which the sessions contract answers as they are)."""

    grant_id: str
    campaign_id: str
    campaign_name: str
    amount_cents: int
    reward_kind: incentives_pb2.RewardKind
    status: incentives_pb2.GrantStatus
    granted_at: datetime.datetime


class SessionGrants:
    """Incentives, which owns the grants of ended sessions (a clawback happens after the evaluation)."""

    def __init__(self, incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub) -> None:
        self._incentives = incentives

    async def grants(self, session_ids: list[str]) -> dict[str, Grant]:
        """The grants of the first MAX_GRANTS_ASKED sessions, by session id; {} when incentives does not answer
        (sessions are still worth showing without their reward; the next read will have it)."""
        if not session_ids:
            return {}
        try:
            reply = await self._incentives.BatchGetSessionGrants(
                incentives_pb2.BatchGetSessionGrantsRequest(session_ids=session_ids[:MAX_GRANTS_ASKED])
            )
        except grpc.aio.AioRpcError:
            return {}
        return {
            grant.session_event_id: Grant(
                grant_id=grant.id,
                campaign_id=grant.campaign_id,
                campaign_name=grant.campaign_name,
                amount_cents=grant.amount_cents,
                reward_kind=grant.reward_kind,
                status=grant.status,
                granted_at=grant.granted_at.ToDatetime(tzinfo=datetime.UTC),
            )
            for grant in reply.grants
        }


@dataclasses.dataclass(frozen=True)
class ChargerReward:
    """A charger's best live campaign reward (cents or Nova, as `reward_kind` says)."""

    reward_cents: int
    reward_kind: incentives_pb2.RewardKind


class ChargerRewards:
    """Incentives' rewards per charger, judged on place rules only (the same for every driver)."""

    def __init__(self, incentives: incentives_pb2_grpc.IncentivesServiceAsyncStub) -> None:
        self._incentives = incentives

    async def rewards(self, rows: Sequence[ChargerRow]) -> dict[str, ChargerReward] | None:
        """The chargers' rewards by charger id (one call for the list); None when incentives does not answer."""
        request = incentives_pb2.ListChargerRewardsRequest(
            chargers=[
                incentives_pb2.ChargerPlace(
                    charger_id=row.id, network=row.network_name, zone_id=row.zone_id, lat=row.lat, lng=row.lng
                )
                for row in rows
            ]
        )
        try:
            reply = await self._incentives.ListChargerRewards(request)
        except grpc.aio.AioRpcError as error:
            log.warning("charger rewards unavailable: %s", error.code())
            return None
        return {reward.charger_id: ChargerReward(reward.reward_cents, reward.reward_kind) for reward in reply.rewards}


@dataclasses.dataclass(frozen=True)
class LinkedMerchant:
    """A store linked to a charger, as merchants lists it (with its exclusive offer's title, "" without one)."""

    merchant_id: str
    place_id: str
    name: str
    lat: float
    lng: float
    phone: str
    category: str
    logo_url: str
    photo_url: str
    photo_urls: tuple[str, ...]
    exclusive_title: str
    open_now: bool
    open_until: str | None
    distance_m: int
    walk_time_s: int


def _linked_merchant(merchant: merchants_pb2.ChargerMerchant) -> LinkedMerchant:
    return LinkedMerchant(
        merchant_id=merchant.merchant_id,
        place_id=merchant.place_id,
        name=merchant.name,
        lat=merchant.lat,
        lng=merchant.lng,
        phone=merchant.phone,
        category=merchant.category,
        logo_url=merchant.logo_url,
        photo_url=merchant.photo_url,
        photo_urls=tuple(merchant.photo_urls),
        exclusive_title=merchant.exclusive_title,
        open_now=merchant.open_now,
        open_until=merchant.open_until if merchant.HasField("open_until") else None,
        distance_m=merchant.distance_m,
        walk_time_s=merchant.walk_time_s,
    )


class MerchantDirectory:
    """The merchants service: the stores linked to chargers, and where a store is."""

    def __init__(self, merchants: merchants_pb2_grpc.MerchantsServiceAsyncStub) -> None:
        self._merchants = merchants

    async def linked(self, charger_ids: list[str]) -> dict[str, tuple[LinkedMerchant, ...]] | None:
        """The stores linked to each charger, in merchants' order (primary first; one call for the list); None
        when merchants does not answer."""
        request = merchants_pb2.BatchListChargerMerchantsRequest(charger_ids=charger_ids)
        try:
            reply = await self._merchants.BatchListChargerMerchants(request)
        except grpc.aio.AioRpcError as error:
            log.warning("merchants of chargers unavailable: %s", error.code())
            return None
        return {entry.charger_id: tuple(_linked_merchant(m) for m in entry.merchants) for entry in reply.chargers}

    async def position(self, place_id: str) -> tuple[float, float] | None:
        """Where the store is (GetMerchant accepts a place id); None for a store merchants does not know, or when
        it does not answer: the caller does without the check rather than blocking."""
        try:
            reply = await self._merchants.GetMerchant(
                merchants_pb2.GetMerchantRequest(merchant_id=place_id), timeout=MERCHANT_POSITION_TIMEOUT_S
            )
        except grpc.aio.AioRpcError:
            return None
        return reply.merchant.lat, reply.merchant.lng


@dataclasses.dataclass(frozen=True)
class Wallet:
    """The money the ledger holds for a driver: all they ever earned (cents) and their spendable Nova."""

    total_earned_cents: int
    nova_balance: int


class Wallets:
    """The ledger's driver wallets."""

    def __init__(self, ledger: ledger_pb2_grpc.LedgerServiceAsyncStub) -> None:
        self._ledger = ledger

    async def wallet(self, driver_id: str) -> Wallet:
        """LEDGER_UNAVAILABLE when the ledger does not answer."""
        try:
            reply = await self._ledger.GetDriverWallet(ledger_pb2.GetDriverWalletRequest(driver_id=driver_id))
        except grpc.aio.AioRpcError:
            raise Unavailable(Reason.LEDGER_UNAVAILABLE, "the ledger did not answer; retry") from None
        return Wallet(reply.wallet.total_earned_cents, reply.wallet.nova_balance)


class ProviderDrivers:
    """Accounts, which links a vehicle provider's account to a driver (creating the driver on its first sign-in)."""

    def __init__(self, accounts: accounts_pb2_grpc.AccountsServiceAsyncStub) -> None:
        self._accounts = accounts

    async def resolve(self, provider: str, subject: str, *, linked_driver_id: str) -> str:
        """The driver of the provider's account `subject` (`linked_driver_id`: the driver whose connection holds
        that account here, "" for none); ACCOUNTS_UNAVAILABLE when accounts does not answer."""
        try:
            driver = await self._accounts.ResolveProviderDriver(
                accounts_pb2.ResolveProviderDriverRequest(
                    provider=provider, subject=subject, linked_driver_id=linked_driver_id
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise Unavailable(Reason.ACCOUNTS_UNAVAILABLE, "the account service did not answer; start again") from exc
        return driver.driver_id
