"""Pieces of the request-context interceptor that need no server: the caller's address from a gRPC peer, and
which database failures are a retryable UNAVAILABLE rather than an INTERNAL error."""

from __future__ import annotations

import asyncpg
import sqlalchemy.exc

from services.common.interceptors import _database_unavailable, _peer_address


def test_the_address_of_a_direct_grpc_peer_has_no_port() -> None:
    assert _peer_address("ipv4:10.0.0.7:53412") == "10.0.0.7"
    assert _peer_address("ipv6:[::1]:50051") == "::1"
    assert _peer_address("unix:/tmp/socket") == "unix:/tmp/socket"


def test_a_refused_database_connection_is_unavailable_through_sqlalchemys_wrapping() -> None:
    refused = asyncpg.TooManyConnectionsError("sorry, too many clients already")
    wrapped = sqlalchemy.exc.DBAPIError("SELECT 1", None, refused)
    assert _database_unavailable(wrapped)
    chained = RuntimeError("pool checkout failed")
    chained.__cause__ = ConnectionRefusedError()
    assert _database_unavailable(chained)


def test_a_connection_lost_mid_statement_or_a_bug_stays_internal() -> None:
    lost = sqlalchemy.exc.DBAPIError("COMMIT", None, asyncpg.ConnectionDoesNotExistError("closed mid-operation"))
    assert not _database_unavailable(lost)  # it may have committed: not safe to retry blindly
    assert not _database_unavailable(KeyError("bug"))
