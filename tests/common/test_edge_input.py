"""The tolerant request reader and the path-binding rule of services/common/edge_input.py, without a server."""

from __future__ import annotations

from google.protobuf import struct_pb2
from nerava.accounts.v1 import accounts_pb2
from nerava.merchants.v1 import merchants_pb2  # noqa: F401 - puts the contract in the default descriptor pool

from services.common.edge_input import PathBindings, UnreadableRequest, query_overriding_path, tolerant_deserializer

read_devices = tolerant_deserializer(accounts_pb2.RegisterDeviceRequest.FromString)
read_struct = tolerant_deserializer(struct_pb2.Struct.FromString)


def test_a_well_formed_request_is_read_as_the_message() -> None:
    request = accounts_pb2.RegisterDeviceRequest(token="device-token-1")
    assert read_devices is not None
    assert read_devices(request.SerializeToString()) == request


def test_bytes_that_are_not_utf8_in_a_string_field_are_unreadable_not_an_exception() -> None:
    # field 1 (token), length-delimited, 2 bytes: an overlong encoding of '.'
    assert read_devices is not None
    result = read_devices(b"\x0a\x02\xc0\xae")
    assert isinstance(result, UnreadableRequest)
    assert result.rule == "string.utf8"


def test_nul_is_found_in_nested_repeated_and_map_fields() -> None:
    assert read_devices is not None and read_struct is not None
    assert read_devices(accounts_pb2.RegisterDeviceRequest(token="a\x00b").SerializeToString()) == UnreadableRequest(
        "token", "must not contain the NUL character", "string.no_nul"
    )
    nested = struct_pb2.Struct()
    nested.update({"outer": {"list": ["fine", "bad\x00"]}})
    result = read_struct(nested.SerializeToString())
    assert isinstance(result, UnreadableRequest)
    assert result.field.startswith("fields[outer]")
    key = struct_pb2.Struct()
    key.update({"k\x00": 1})
    assert isinstance(read_struct(key.SerializeToString()), UnreadableRequest)


def test_zero_bytes_that_are_not_text_are_fine() -> None:
    struct = struct_pb2.Struct()
    struct.update({"n": 0.0, "flag": False})
    assert read_struct is not None
    assert read_struct(struct.SerializeToString()) == struct


def test_a_query_parameter_naming_a_path_bound_field_is_found() -> None:
    bound = PathBindings().fields("nerava.merchants.v1.MerchantsService", "GetBillingSummary")
    assert bound == frozenset({"merchant_id"})
    assert query_overriding_path("/v1/merchants/B/billing/summary?merchant_id=A", bound) == "merchant_id"
    assert query_overriding_path("/v1/merchants/B/billing/summary?month=2026-01", bound) is None
    assert query_overriding_path("/v1/merchants/B/billing/summary", bound) is None
