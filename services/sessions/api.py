"""The SessionsService servicer.

Its RPCs are specified in proto/nerava/sessions/v1/sessions.proto; until the sessions issue lands they answer
UNIMPLEMENTED (the generated base class does that), behind the same authentication as the real ones.
"""

from __future__ import annotations

from nerava.sessions.v1 import sessions_pb2, sessions_pb2_grpc

from services.common.interceptors import Access

SERVICE_NAME = sessions_pb2.DESCRIPTOR.services_by_name["SessionsService"].full_name

ACCESS: dict[str, Access] = {
    method.name: Access.signed_in() for method in sessions_pb2.DESCRIPTOR.services_by_name["SessionsService"].methods
}


class SessionsApi(sessions_pb2_grpc.SessionsServiceServicer):
    """Every RPC answers UNIMPLEMENTED for now."""
