"""Nerava's typed Python client for operators and internal tools: dataclass messages and enums generated
from proto/ by betterproto2 (`make proto` → nerava_client/_proto), synchronous grpcio stubs per service, and
errors as exceptions carrying the ErrorInfo reason. The services never import it.

    from nerava_client import Client, accounts
    with Client(token=access_token) as client:
        me = client.accounts.get_me(accounts.GetMeRequest())
"""

from nerava_client._proto.nerava.accounts import v1 as accounts
from nerava_client._proto.nerava.incentives import v1 as incentives
from nerava_client._proto.nerava.ledger import v1 as ledger
from nerava_client._proto.nerava.merchants import v1 as merchants
from nerava_client._proto.nerava.sessions import v1 as sessions
from nerava_client.client import Client, default_targets
from nerava_client.errors import NeravaError

__all__ = [
    "Client",
    "NeravaError",
    "accounts",
    "default_targets",
    "incentives",
    "ledger",
    "merchants",
    "sessions",
]
