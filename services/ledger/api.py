"""The LedgerService servicer.

Its RPCs are specified in proto/nerava/ledger/v1/ledger.proto; until the ledger issue lands they answer
UNIMPLEMENTED (the generated base class does that), behind the same authentication as the real ones.
"""

from __future__ import annotations

from nerava.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.interceptors import Access

SERVICE_NAME = ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].full_name

ACCESS: dict[str, Access] = {
    method.name: Access.signed_in() for method in ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].methods
}


class LedgerApi(ledger_pb2_grpc.LedgerServiceServicer):
    """Every RPC answers UNIMPLEMENTED for now."""
