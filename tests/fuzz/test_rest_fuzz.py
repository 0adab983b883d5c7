"""A black-box fuzz of every REST route in the descriptor set, through the real Envoy to the real services,
as anonymous and as each role: zero 5xx, zero timeouts, and no 2xx on a route the caller's role may not use.

Bounded: every route gets a typed and a hostile request from every caller first, then random cases until
NERAVA_FUZZ_SECONDS (default 90) have passed. NERAVA_FUZZ_SEED replays a run. It runs after every other test
(tests/conftest.py) because the requests it makes change data."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import random
import time

import httpx

from services.common.config import SERVICE_NAMES
from services.common.context import ANONYMOUS, Caller
from services.common.interceptors import Access
from tests.fuzz.contract_fuzz import Case, Route, case, routes
from tests.support.gateway import Gateway
from tests.support.people import NewPerson

FUZZ_SECONDS = float(os.environ.get("NERAVA_FUZZ_SECONDS", "90"))
FUZZ_SEED = int(os.environ.get("NERAVA_FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
WORKERS = 4
ROLES = ("driver", "sponsor", "merchant", "admin")
CALLERS = ("anonymous", *ROLES)
TIMEOUT_S = 15.0


def _access() -> dict[tuple[str, str], Access]:
    table: dict[tuple[str, str], Access] = {}
    for service in SERVICE_NAMES:
        api = importlib.import_module(f"services.{service}.api")
        table.update({(api.SERVICE_NAME, method): rule for method, rule in api.ACCESS.items()})
    return table


@dataclasses.dataclass
class Findings:
    requests: int = 0
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)

    def fail(self, what: str, caller: str, item: Case, detail: str) -> None:
        if len(self.failures) < 40:
            body = (item.body or b"")[:200]
            self.failures.append(f"{what}: {caller} {item.method} {item.url[:300]} body={body!r} → {detail[:300]}")


async def test_no_input_from_any_caller_gets_a_5xx_a_timeout_or_a_forbidden_2xx(
    gateway: Gateway, person: NewPerson
) -> None:
    rng = random.Random(FUZZ_SEED)
    access = _access()
    every_route = routes()
    tokens: dict[str, str | None] = {"anonymous": None}
    for role in ROLES:
        tokens[role] = (await person(role)).token
    findings = Findings()
    # A logout everywhere revokes the fuzzing caller's own token: a new one is signed in for the next requests.
    renewing: dict[str, asyncio.Lock] = {role: asyncio.Lock() for role in ROLES}

    async def renew(role: str, stale: str | None) -> None:
        async with renewing[role]:
            if tokens[role] == stale:
                tokens[role] = (await person(role)).token

    def admitted(route: Route, caller: str) -> bool:
        rule = access[(route.service, route.method)]
        who = ANONYMOUS if caller == "anonymous" else Caller(user_id="fuzz", roles=frozenset({caller}))
        return rule.allows(who)

    async def send(client: httpx.AsyncClient, caller: str, item: Case) -> None:
        token = tokens[caller]
        headers = dict(item.headers)
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        findings.requests += 1
        try:
            reply = await client.request(item.method, item.url, content=item.body, headers=headers)
            # The PostgreSQL server of a shared CI machine may run out of connections: the services then answer
            # 503 DATABASE_UNAVAILABLE, which says nothing about this input. The same request is retried a
            # few times; an input that still ends in a 5xx is a finding.
            for pause in (0.5, 1.0, 2.0):
                if reply.status_code != 503 or "DATABASE_UNAVAILABLE" not in reply.text:
                    break
                await asyncio.sleep(pause)
                reply = await client.request(item.method, item.url, content=item.body, headers=headers)
        except httpx.TimeoutException as error:
            findings.fail("timeout", caller, item, repr(error))
            return
        findings.statuses[reply.status_code] = findings.statuses.get(reply.status_code, 0) + 1
        if reply.status_code >= 500:
            findings.fail("5xx", caller, item, f"{reply.status_code} {reply.text}")
        elif reply.is_success and not admitted(item.route, caller):
            findings.fail("forbidden 2xx", caller, item, f"{reply.status_code} {reply.text}")
        elif reply.status_code == 401 and caller != "anonymous" and "TOKEN_REVOKED" in reply.text:
            await renew(caller, token)

    # First every route from every caller, typed then hostile; then random cases until the budget is spent.
    # Logout goes last in each pass: it may revoke the caller's token.
    ordered = sorted(every_route, key=lambda route: route.method == "Logout")
    first = [(caller, route, kind) for kind in ("typed", "hostile") for route in ordered for caller in CALLERS]
    queue: asyncio.Queue[tuple[str, Case]] = asyncio.Queue()
    for caller, route, kind in first:
        queue.put_nowait((caller, case(route, kind, rng)))
    deadline = time.monotonic() + FUZZ_SECONDS

    async def worker(client: httpx.AsyncClient) -> None:
        while True:
            if queue.empty():
                if time.monotonic() >= deadline:
                    return
                queue.put_nowait(
                    (rng.choice(CALLERS), case(rng.choice(ordered), rng.choice(("typed", "hostile")), rng))
                )
            caller, item = queue.get_nowait()
            await send(client, caller, item)

    limits = httpx.Limits(max_connections=WORKERS)
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=TIMEOUT_S, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(WORKERS)))

    statuses = sorted(findings.statuses.items())
    summary = f"seed {FUZZ_SEED}: {findings.requests} requests over {len(every_route)} routes, statuses {statuses}"
    print(summary)
    assert not findings.failures, summary + "\n" + "\n".join(findings.failures)
