"""Request authentication: API tokens in `Authorization: token|Bearer <t>` or HTTP Basic (for git).

Only the SHA-256 of a token is ever stored or logged; the token itself exists in
the response that issues it and in the client's hands.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from api.errors import ApiError
from domain.records import Token, User
from domain.state import LedgerState

TOKEN_PREFIX = "stl_"


@dataclass(frozen=True)
class Caller:
    user: User
    token: Token


def new_token() -> tuple[str, str]:
    """A fresh high-entropy API token and its hex SHA-256."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def credentials(header: str | None) -> str | None:
    """The token carried by an Authorization header, or None when there is none."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme in ("token", "bearer") and value:
        return value
    if scheme == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError(401, "Bad credentials") from None
        _user, _, password = decoded.partition(":")
        return password or None
    raise ApiError(401, "Bad credentials")


def authenticate(state: LedgerState, header: str | None) -> Caller | None:
    """The caller behind the header, None for an anonymous request; 401 for an unknown or revoked token."""
    token = credentials(header)
    if token is None:
        return None
    record = state.token_by_hash(token_hash(token))
    if record is None or record.revoked:
        raise ApiError(401, "Bad credentials")
    user = state.user(record.user_id)
    if user is None:
        raise ApiError(401, "Bad credentials")
    return Caller(user, record)


def require(caller: Caller | None) -> Caller:
    if caller is None:
        raise ApiError(401, "Requires authentication")
    return caller
