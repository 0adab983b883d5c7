"""A local SendGrid v3 Mail Send API (POST /v3/mail/send) with an outbox instead of delivery.

It checks what SendGrid checks before accepting a message — the `Authorization: Bearer <API key>`, a JSON body
with `personalizations[].to[].email`, `from.email`, `subject` and `content[]` — answers 202 with an empty body
like SendGrid, and 400/401 with SendGrid's `{"errors": [{"message", "field"}]}`. Accepted messages land in
`outbox`; tests read the claim link from there, and under `make run` a person reads it with

  curl -s http://127.0.0.1:PORT/_fake/outbox
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import json
import secrets
from typing import Any, Final

from fakes.http1 import Answer, LoopbackServer, Request

SEND_PATH: Final = "/v3/mail/send"
_JSON = {"content-type": "application/json"}


@dataclasses.dataclass(frozen=True)
class Email:
    """One message as a recipient would read it."""

    to: str
    sender: str
    subject: str
    text: str


def _errors(status: int, message: str, field: str | None = None) -> Answer:
    return status, _JSON, json.dumps({"errors": [{"message": message, "field": field, "help": None}]}).encode()


def _message(body: Any) -> tuple[list[Email], Answer | None]:
    if not isinstance(body, dict):
        return [], _errors(400, "Bad Request", None)
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        return [], _errors(400, "The personalizations field is required.", "personalizations")
    sender = (body.get("from") or {}).get("email") if isinstance(body.get("from"), dict) else None
    if not isinstance(sender, str) or "@" not in sender:
        return [], _errors(400, "The from object must be provided for every email send.", "from.email")
    subject = body.get("subject")
    if not isinstance(subject, str) or not subject:
        return [], _errors(400, "The subject is required.", "subject")
    contents = body.get("content")
    if not isinstance(contents, list) or not contents or not all(isinstance(c, dict) for c in contents):
        return [], _errors(400, "The content value must be a string at least one character in length.", "content")
    text = next((str(c.get("value", "")) for c in contents if c.get("type") == "text/plain"), "")
    emails: list[Email] = []
    for personalization in personalizations:
        recipients = personalization.get("to") if isinstance(personalization, dict) else None
        if not isinstance(recipients, list) or not recipients:
            return [], _errors(400, "The to array is required for all personalization objects.", "personalizations.to")
        for recipient in recipients:
            address = recipient.get("email") if isinstance(recipient, dict) else None
            if not isinstance(address, str) or "@" not in address:
                return [], _errors(400, "Does not contain a valid address.", "personalizations.to.email")
            emails.append(Email(to=address.lower(), sender=sender, subject=subject, text=text))
    return emails, None


class FakeSendGrid(LoopbackServer):
    """SendGrid's Mail Send on an ephemeral loopback port; `outbox` holds what it accepted."""

    def __init__(self, *, api_key: str | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.api_key = api_key or "SG." + secrets.token_urlsafe(24)
        self.outbox: list[Email] = []
        self._failures: list[int] = []

    async def __aenter__(self) -> FakeSendGrid:
        await super().__aenter__()
        return self

    def fail_next(self, status: int = 503) -> None:
        """The next send is answered with this status and not delivered."""
        self._failures.append(status)

    def last_to(self, address: str) -> Email:
        for email in reversed(self.outbox):
            if email.to == address.lower():
                return email
        raise LookupError(f"no email was sent to {address!r}")

    async def answer(self, request: Request) -> Answer:
        if request.method == "GET" and request.path == "/_fake/outbox":
            return 200, _JSON, json.dumps([dataclasses.asdict(e) for e in self.outbox]).encode()
        if request.path != SEND_PATH:
            return _errors(404, "Not Found")
        if request.method != "POST":
            return _errors(405, "Method Not Allowed")
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {self.api_key}".encode()):
            return _errors(401, "The provided authorization grant is invalid, expired, or revoked")
        if self._failures:
            return _errors(self._failures.pop(0), "Service Unavailable")
        try:
            body = json.loads(request.body)
        except ValueError:
            return _errors(400, "Bad Request")
        emails, refusal = _message(body)
        if refusal is not None:
            return refusal
        self.outbox.extend(emails)
        return 202, {}, b""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fakes.sendgrid", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: any free port (the URL is printed)")
    parser.add_argument("--api-key", help="the API key to accept (default: a random one, printed)")
    args = parser.parse_args(argv)

    async def serve() -> None:
        async with FakeSendGrid(api_key=args.api_key, port=args.port) as fake:
            print(json.dumps({"url": fake.base_url, "api_key": fake.api_key}), flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
