"""The OTP send counter (what NeravaOtpSendSurge and NeravaOtpProviderFailing read) counts each code request by
channel and what became of it."""

from __future__ import annotations

import grpc
import prometheus_client
from nerava.accounts.v1 import accounts_pb2, accounts_pb2_grpc

from tests.support.mesh import Mesh
from tests.support.rpc import random_phone


def _sends(result: str) -> float:
    labels = {"channel": "sms", "result": result}
    return prometheus_client.REGISTRY.get_sample_value("nerava_otp_sends_total", labels) or 0.0


async def test_each_code_request_is_counted_by_its_result(mesh: Mesh) -> None:
    accounts = accounts_pb2_grpc.AccountsServiceStub(mesh.channels["accounts"])
    phone = random_phone()
    sent, limited = _sends("sent"), _sends("rate_limited")
    refused = 0
    for _ in range(6):  # the per-phone limit lets a few through, then refuses
        try:
            await accounts.StartPhoneLogin(accounts_pb2.StartPhoneLoginRequest(phone=phone))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            refused += 1
    assert refused > 0, "the per-phone limit should refuse some of six requests"
    assert (_sends("sent") - sent, _sends("rate_limited") - limited) == (6 - refused, refused)
