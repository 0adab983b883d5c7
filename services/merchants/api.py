"""The MerchantsService servicer.

Its RPCs are specified in proto/nerava/merchants/v1/merchants.proto; until the merchants issue lands they answer
UNIMPLEMENTED (the generated base class does that), behind the same authentication as the real ones.
"""

from __future__ import annotations

from nerava.merchants.v1 import merchants_pb2, merchants_pb2_grpc

from services.common.interceptors import Access

SERVICE_NAME = merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].full_name

ACCESS: dict[str, Access] = {
    method.name: Access.signed_in() for method in merchants_pb2.DESCRIPTOR.services_by_name["MerchantsService"].methods
}


class MerchantsApi(merchants_pb2_grpc.MerchantsServiceServicer):
    """Every RPC answers UNIMPLEMENTED for now."""
