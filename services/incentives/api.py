"""The IncentivesService servicer.

Its RPCs are specified in proto/nerava/incentives/v1/incentives.proto; until the incentives issue lands they answer
UNIMPLEMENTED (the generated base class does that), behind the same authentication as the real ones.
"""

from __future__ import annotations

from nerava.incentives.v1 import incentives_pb2, incentives_pb2_grpc

from services.common.interceptors import Access

SERVICE_NAME = incentives_pb2.DESCRIPTOR.services_by_name["IncentivesService"].full_name

ACCESS: dict[str, Access] = {
    method.name: Access.signed_in()
    for method in incentives_pb2.DESCRIPTOR.services_by_name["IncentivesService"].methods
}


class IncentivesApi(incentives_pb2_grpc.IncentivesServiceServicer):
    """Every RPC answers UNIMPLEMENTED for now."""
