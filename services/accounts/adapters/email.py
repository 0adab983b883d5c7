"""Sending email (the merchant claim link) through SendGrid's v3 Mail Send API over httpx.

SendGrid rather than SMTP: the same shape as every other third party here (an HTTPS API behind an adapter,
tested against a local fake speaking its wire format, fakes/sendgrid.py), no SMTP server or library to run,
and a clear answer per message (202 accepted, 4xx refused, 5xx retry) instead of SMTP's relay semantics.
"""

from __future__ import annotations

from typing import Final

import httpx

_SEND_PATH: Final = "/v3/mail/send"


class EmailError(Exception):
    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class SendGridEmail:
    def __init__(self, *, api_key: str, base_url: str, sender: str, timeout: float = 5.0) -> None:
        self._sender = sender
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )
        self.configured = bool(api_key)

    async def send(self, *, to: str, subject: str, text: str) -> None:
        body = {
            "personalizations": [{"to": [{"email": to}]}],
            "from": {"email": self._sender, "name": "Nerava"},
            "subject": subject,
            "content": [{"type": "text/plain", "value": text}],
            # A sign-in link must reach the person as written: no click-tracking redirect in front of it.
            "tracking_settings": {"click_tracking": {"enable": False, "enable_text": False}},
        }
        try:
            reply = await self._client.post(_SEND_PATH, json=body)
        except httpx.HTTPError as exc:
            raise EmailError(f"SendGrid unreachable: {exc!r}", retryable=True) from exc
        if reply.status_code != 202:
            raise EmailError(
                f"SendGrid refused: HTTP {reply.status_code} {reply.text[:300]}",
                retryable=reply.status_code == 429 or reply.status_code >= 500,
            )

    async def aclose(self) -> None:
        await self._client.aclose()
