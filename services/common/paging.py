"""Page tokens (AIP-158): opaque to clients, a position (an offset or the last id of the previous page) and what
the token is bound to (a search's parameters, a caller), so a token is only accepted for the listing that
issued it."""

from __future__ import annotations

import base64

from services.common.errors import InvalidArgument


def page_token(position: int, bound: str = "") -> str:
    return base64.urlsafe_b64encode(f"p:{position}:{bound}".encode()).decode().rstrip("=")


# Positions are offsets or row ids; a token is not signed, so a forged one must not carry a number the database
# (bigint) or a response field cannot hold. Offset listings pass their own, much smaller, `maximum`.
MAX_POSITION = 2**63 - 1
MAX_OFFSET = 100_000


def page_position(token: str, bound: str = "", *, maximum: int = MAX_POSITION) -> int | None:
    """The position a token carries; None for no token. INVALID_ARGUMENT naming `page_token` for a token this
    service did not issue, one issued for another listing, or one past `maximum`."""
    if not token:
        return None
    try:
        prefix, number, issued_for = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":", 2)
    except (ValueError, UnicodeDecodeError):
        prefix, number, issued_for = "", "", ""
    if prefix != "p" or not number.isdigit():
        raise InvalidArgument([("page_token", "not a token from a previous page")])
    if issued_for != bound:
        raise InvalidArgument([("page_token", "the token belongs to a listing with other parameters")])
    if int(number) > maximum:
        raise InvalidArgument([("page_token", "not a token from a previous page")])
    return int(number)
