"""Signing in to the driver app with a Tesla account (for accounts' /v1/auth/tesla/login-url and /login): the
consent is ConnectTesla's (PKCE, a single-use state of 10 minutes, tokens stored encrypted), except that nobody
is signed in yet — the state names no driver, Tesla sends the browser back to the app's sign-in screen instead of
our callback, and the driver is the one accounts links to the Tesla account (`sub` of the token response's
id_token), created on its first sign-in."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.errors import FailedPrecondition, PermissionDenied, Unavailable
from services.sessions.adapters.tesla import TeslaFleetClient
from services.sessions.adapters.vehicles import AuthorizationRefused, VehicleApiError
from services.sessions.connections import TESLA, connected_driver, save_connection
from services.sessions.linking import Consent, Vehicle, claim_state, keep_state, vehicle_records
from services.sessions.peers import ProviderDrivers
from services.sessions.reasons import Reason
from services.sessions.tokens import TokenCipher, TokenDecryptionError


@dataclasses.dataclass(frozen=True)
class SignedIn:
    """The driver accounts links to the Tesla account, and the account's cars (now linked to that driver)."""

    driver_id: str
    vehicles: tuple[Vehicle, ...]


# oauth_states.provider of a sign-in consent (its driver_id is empty): never accepted by ConnectTesla's callback.
SIGN_IN = "tesla-sign-in"


class TeslaSignIn:
    def __init__(
        self,
        engine: AsyncEngine,
        tesla: TeslaFleetClient,
        cipher: TokenCipher,
        accounts: ProviderDrivers,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self._engine = engine
        self._tesla = tesla  # its redirect URI is the driver app's sign-in screen
        self._cipher = cipher
        self._accounts = accounts
        self._clock = clock

    async def start(self) -> Consent:
        start = self._tesla.start_authorization()
        await keep_state(
            self._engine,
            self._cipher,
            driver_id="",
            provider=SIGN_IN,
            state=start.state,
            code_verifier=start.code_verifier,
            now=self._clock(),
        )
        return Consent(authorization_url=start.url, state=start.state)

    async def complete(self, code: str, state: str) -> SignedIn:
        claimed = await claim_state(self._engine, state, SIGN_IN, self._clock())
        if claimed is None:
            raise PermissionDenied(Reason.STATE_INVALID, "the sign-in state is unknown, expired or already used")
        try:
            verifier = self._cipher.decrypt(claimed.code_verifier, state)
            tokens = await self._tesla.exchange_code(code, verifier)
            vehicles = await self._tesla.list_vehicles(tokens.access_token)
        except (AuthorizationRefused, TokenDecryptionError) as exc:
            raise FailedPrecondition(Reason.OAUTH_DENIED, "Tesla did not accept the sign-in; start again") from exc
        except VehicleApiError as exc:
            raise Unavailable(Reason.VEHICLE_UNAVAILABLE, "Tesla did not answer; start again") from exc
        if not tokens.account_id:
            raise FailedPrecondition(Reason.OAUTH_DENIED, "Tesla did not say whose account signed in")
        driver_id = await self._accounts.resolve(
            "tesla",
            tokens.account_id,
            linked_driver_id=await connected_driver(self._engine, TESLA, tokens.account_id) or "",
        )
        records = vehicle_records(vehicles)
        await save_connection(self._engine, self._cipher, driver_id=driver_id, tokens=tokens, vehicles=records)
        return SignedIn(driver_id, tuple(Vehicle.stored(r) for r in records))
