"""OTP adapters: TwilioVerifyProvider against a local fake Twilio Verify, and StubOtpProvider.

The fake server is the only test double: the adapter runs unmodified over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio

from fakes.twilio_verify import (
    MAX_CHECK_ATTEMPTS,
    MAX_SEND_ATTEMPTS,
    FakeTwilioVerify,
)
from services.accounts.adapters.otp import (
    Channel,
    OtpProvider,
    OtpProviderError,
    StubOtpProvider,
    TwilioVerifyProvider,
)

PHONE = "+15017122661"
EMAIL = "ada@example.com"


@pytest_asyncio.fixture
async def twilio() -> AsyncIterator[FakeTwilioVerify]:
    async with FakeTwilioVerify() as fake:
        yield fake


def _provider_for(
    twilio: FakeTwilioVerify, *, auth_token: str | None = None, timeout: float = 5.0
) -> TwilioVerifyProvider:
    return TwilioVerifyProvider(
        account_sid=twilio.account_sid,
        auth_token=auth_token if auth_token is not None else twilio.auth_token,
        verify_service_sid=twilio.service_sid,
        base_url=twilio.base_url,
        timeout=timeout,
    )


@pytest_asyncio.fixture
async def provider(twilio: FakeTwilioVerify) -> AsyncIterator[TwilioVerifyProvider]:
    async with _provider_for(twilio) as adapter:
        yield adapter


def _wrong_code(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


# -- TwilioVerifyProvider: codes ------------------------------------------------------------


@pytest.mark.asyncio
async def test_sent_sms_code_is_accepted(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    await provider.send_code(Channel.SMS, PHONE)

    [sent] = twilio.sent
    assert (sent.channel, sent.to) == ("sms", PHONE)
    assert len(sent.code) == 6 and sent.code.isdigit()
    assert await provider.check_code(Channel.SMS, PHONE, sent.code) is True


@pytest.mark.asyncio
async def test_requests_use_twilio_wire_format(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    await provider.send_code(Channel.SMS, PHONE)
    await provider.check_code(Channel.SMS, PHONE, twilio.last_code_sent_to(PHONE))

    send, check = twilio.requests
    assert (send.method, send.path) == (
        "POST",
        f"/v2/Services/{twilio.service_sid}/Verifications",
    )
    assert send.form == {"To": PHONE, "Channel": "sms"}
    assert send.headers["content-type"] == "application/x-www-form-urlencoded"
    assert send.headers["authorization"].startswith("Basic ")
    assert check.path == f"/v2/Services/{twilio.service_sid}/VerificationCheck"
    assert check.form == {"To": PHONE, "Code": twilio.last_code_sent_to(PHONE)}


@pytest.mark.asyncio
async def test_wrong_code_is_rejected_and_right_code_still_works(
    twilio: FakeTwilioVerify, provider: TwilioVerifyProvider
) -> None:
    await provider.send_code(Channel.SMS, PHONE)
    code = twilio.last_code_sent_to(PHONE)

    assert await provider.check_code(Channel.SMS, PHONE, _wrong_code(code)) is False
    assert await provider.check_code(Channel.SMS, PHONE, code) is True


@pytest.mark.asyncio
async def test_code_is_single_use(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    await provider.send_code(Channel.SMS, PHONE)
    code = twilio.last_code_sent_to(PHONE)

    assert await provider.check_code(Channel.SMS, PHONE, code) is True
    # Twilio deleted the approved verification and answers 404/20404: a wrong code, not an error.
    assert await provider.check_code(Channel.SMS, PHONE, code) is False


@pytest.mark.asyncio
async def test_right_code_is_rejected_after_five_wrong_attempts(
    twilio: FakeTwilioVerify, provider: TwilioVerifyProvider
) -> None:
    await provider.send_code(Channel.SMS, PHONE)
    code = twilio.last_code_sent_to(PHONE)

    for _ in range(MAX_CHECK_ATTEMPTS):
        assert await provider.check_code(Channel.SMS, PHONE, _wrong_code(code)) is False
    assert await provider.check_code(Channel.SMS, PHONE, code) is False


@pytest.mark.asyncio
async def test_expired_code_is_rejected(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    await provider.send_code(Channel.SMS, PHONE)
    twilio.advance_time(timedelta(minutes=10))

    assert await provider.check_code(Channel.SMS, PHONE, twilio.last_code_sent_to(PHONE)) is False


@pytest.mark.asyncio
async def test_check_without_any_send_is_rejected(
    provider: TwilioVerifyProvider,
) -> None:
    assert await provider.check_code(Channel.SMS, PHONE, "123456") is False


@pytest.mark.asyncio
async def test_code_of_impossible_length_is_rejected_without_asking_twilio(
    twilio: FakeTwilioVerify, provider: TwilioVerifyProvider
) -> None:
    # Twilio would answer 400/60200 for these; to a person logging in they are just wrong codes.
    assert await provider.check_code(Channel.SMS, PHONE, "12") is False
    assert await provider.check_code(Channel.SMS, PHONE, "12345678901") is False
    assert twilio.requests == []


@pytest.mark.asyncio
async def test_email_code_is_sent_and_accepted(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    await provider.send_code(Channel.EMAIL, EMAIL)

    [sent] = twilio.sent
    assert (sent.channel, sent.to) == ("email", EMAIL)
    assert twilio.requests[0].form == {"To": EMAIL, "Channel": "email"}
    assert await provider.check_code(Channel.EMAIL, EMAIL, sent.code) is True


@pytest.mark.asyncio
async def test_resend_while_pending_delivers_the_same_code(
    twilio: FakeTwilioVerify, provider: TwilioVerifyProvider
) -> None:
    await provider.send_code(Channel.SMS, PHONE)
    await provider.send_code(Channel.SMS, PHONE)

    first, second = twilio.sent
    assert first.code == second.code
    assert await provider.check_code(Channel.SMS, PHONE, second.code) is True


# -- TwilioVerifyProvider: failures ---------------------------------------------------------


@pytest.mark.asyncio
async def test_bad_credentials_are_not_retryable(twilio: FakeTwilioVerify) -> None:
    async with _provider_for(twilio, auth_token="not-the-token") as provider:
        with pytest.raises(OtpProviderError) as sending:
            await provider.send_code(Channel.SMS, PHONE)
        with pytest.raises(OtpProviderError) as checking:
            await provider.check_code(Channel.SMS, PHONE, "123456")

    for failure in (sending.value, checking.value):
        assert failure.retryable is False
        assert (failure.status_code, failure.provider_code) == (401, 20003)
    assert twilio.sent == []


@pytest.mark.asyncio
async def test_unknown_verify_service_is_not_retryable(
    twilio: FakeTwilioVerify,
) -> None:
    async with TwilioVerifyProvider(
        account_sid=twilio.account_sid,
        auth_token=twilio.auth_token,
        verify_service_sid="VA" + "0" * 32,
        base_url=twilio.base_url,
    ) as provider:
        with pytest.raises(OtpProviderError) as failure:
            await provider.send_code(Channel.SMS, PHONE)

    assert failure.value.retryable is False
    assert failure.value.provider_code == 20404


@pytest.mark.asyncio
async def test_twilio_outage_is_retryable(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    twilio.fail_next_send_with(503, 20503)
    with pytest.raises(OtpProviderError) as sending:
        await provider.send_code(Channel.SMS, PHONE)
    assert sending.value.retryable is True
    assert sending.value.status_code == 503

    # The outage was one response: the same client carries on.
    await provider.send_code(Channel.SMS, PHONE)
    twilio.fail_next_check_with(500, 20500)
    with pytest.raises(OtpProviderError) as checking:
        await provider.check_code(Channel.SMS, PHONE, twilio.last_code_sent_to(PHONE))
    assert checking.value.retryable is True


@pytest.mark.asyncio
async def test_timeout_is_retryable_and_client_recovers(
    twilio: FakeTwilioVerify,
) -> None:
    async with _provider_for(twilio, timeout=0.2) as provider:
        twilio.response_delay = 1.0
        with pytest.raises(OtpProviderError) as failure:
            await provider.send_code(Channel.SMS, PHONE)
        assert failure.value.retryable is True

        twilio.response_delay = 0.0
        await provider.send_code(Channel.SMS, PHONE)
        assert await provider.check_code(Channel.SMS, PHONE, twilio.last_code_sent_to(PHONE)) is True


@pytest.mark.asyncio
async def test_unreachable_twilio_is_retryable() -> None:
    async with FakeTwilioVerify() as stopped:
        credentials = (stopped.account_sid, stopped.auth_token, stopped.service_sid)
        base_url = stopped.base_url
    # The fake has stopped listening: the connection is refused.
    account_sid, auth_token, service_sid = credentials
    async with TwilioVerifyProvider(
        account_sid=account_sid,
        auth_token=auth_token,
        verify_service_sid=service_sid,
        base_url=base_url,
    ) as provider:
        with pytest.raises(OtpProviderError) as failure:
            await provider.send_code(Channel.SMS, PHONE)

    assert failure.value.retryable is True


@pytest.mark.asyncio
async def test_max_send_attempts_is_not_retryable(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    twilio.fail_next_send_with(429, 60203, "Max send attempts reached")
    with pytest.raises(OtpProviderError) as failure:
        await provider.send_code(Channel.SMS, PHONE)

    assert failure.value.retryable is False
    assert (failure.value.status_code, failure.value.provider_code) == (429, 60203)


@pytest.mark.asyncio
async def test_sixth_send_to_one_recipient_hits_twilio_send_limit(
    twilio: FakeTwilioVerify, provider: TwilioVerifyProvider
) -> None:
    for _ in range(MAX_SEND_ATTEMPTS):
        await provider.send_code(Channel.SMS, PHONE)
    with pytest.raises(OtpProviderError) as failure:
        await provider.send_code(Channel.SMS, PHONE)

    assert failure.value.retryable is False
    assert failure.value.provider_code == 60203
    assert len(twilio.sent) == MAX_SEND_ATTEMPTS


@pytest.mark.asyncio
async def test_other_rate_limits_are_retryable(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    twilio.fail_next_send_with(429, 20429, "Too Many Requests")
    with pytest.raises(OtpProviderError) as failure:
        await provider.send_code(Channel.SMS, PHONE)

    assert failure.value.retryable is True


@pytest.mark.asyncio
async def test_invalid_phone_number_is_not_retryable(twilio: FakeTwilioVerify, provider: TwilioVerifyProvider) -> None:
    with pytest.raises(OtpProviderError) as failure:
        await provider.send_code(Channel.SMS, "5017122661")

    assert failure.value.retryable is False
    assert (failure.value.status_code, failure.value.provider_code) == (400, 60200)
    assert twilio.sent == []


# -- StubOtpProvider ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_disabled_stub_refuses_everything() -> None:
    stub = StubOtpProvider(enabled=False)

    with pytest.raises(OtpProviderError, match="stub OTP provider is disabled") as sending:
        await stub.send_code(Channel.SMS, PHONE)
    with pytest.raises(OtpProviderError) as checking:
        await stub.check_code(Channel.SMS, PHONE, "000000")

    assert sending.value.retryable is False
    assert checking.value.retryable is False
    await stub.aclose()


@pytest.mark.asyncio
async def test_enabled_stub_accepts_only_the_development_code() -> None:
    stub = StubOtpProvider(enabled=True)

    await stub.send_code(Channel.EMAIL, EMAIL)
    assert await stub.check_code(Channel.EMAIL, EMAIL, "000000") is True
    for wrong in ("123456", "00000", "0000000", " 000000", ""):
        assert await stub.check_code(Channel.EMAIL, EMAIL, wrong) is False
    await stub.aclose()


def test_adapters_satisfy_the_otp_provider_protocol() -> None:
    # Checked by mypy: both adapters must be usable wherever an OtpProvider is expected.
    providers: list[type[OtpProvider]] = [TwilioVerifyProvider, StubOtpProvider]
    assert len(providers) == 2
