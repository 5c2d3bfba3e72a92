"""Request authentication: API tokens in `Authorization: token|Bearer <t>` or HTTP Basic (for git).

Only the SHA-256 of a token is ever stored or logged; the token itself exists in
the response that issues it and in the client's hands.

`OAuthScopeHeaders` tells clients about scopes as GitHub does: every response to a
request with a valid token carries `X-OAuth-Scopes` (the token's scopes), and
`X-Accepted-OAuth-Scopes` (what the route checks for) where the route recorded it with
`accepts`. Which scopes a route needs is `commands.scopes`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapters.ledger import LedgerHost
from api.errors import ApiError
from commands import scopes
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


def require_site_admin_scope(request: Request, ledger: LedgerHost, caller: Caller) -> None:
    """Native site-administration routes: the caller's token needs `site_admin` (protocol v2)."""
    accepts(request, scopes.SITE_ADMINISTRATION)
    if not ledger.rules.at(ledger.height + 1).token_scopes:
        return
    refused = scopes.SITE_ADMINISTRATION.refusal(caller.token.scopes)
    if refused is not None:
        raise ApiError(refused.code, refused.message)


# -- scope headers ---------------------------------------------------------------------------

OAUTH_SCOPES = "X-OAuth-Scopes"
ACCEPTED_OAUTH_SCOPES = "X-Accepted-OAuth-Scopes"
_ACCEPTED_STATE = "stele_accepted_scopes"


def accepts(request: Request, need: scopes.Need) -> None:
    """Record the scopes this route accepts, for the response's `X-Accepted-OAuth-Scopes`.

    The first record wins: a write that reads its result back afterwards (through a read
    helper that records `repo`) still answers with what the write accepted.
    """
    if getattr(request.state, _ACCEPTED_STATE, None) is None:
        setattr(request.state, _ACCEPTED_STATE, need.accepted_header)


class OAuthScopeHeaders:
    """ASGI middleware adding GitHub's scope headers to responses to token-authenticated requests.

    The token is looked up again here (a hash look-up), so every route gets the header
    whichever way it authenticates; a request without a valid token gets neither header.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_scopes(message: Message) -> None:
            if message["type"] == "http.response.start":
                token = _valid_token(scope)
                if token is not None:
                    headers = MutableHeaders(scope=message)
                    headers[OAUTH_SCOPES] = scopes.header(token.scopes)
                    state: dict[str, Any] = scope.get("state") or {}
                    accepted = state.get(_ACCEPTED_STATE)
                    if isinstance(accepted, str):
                        headers[ACCEPTED_OAUTH_SCOPES] = accepted
            await send(message)

        await self.app(scope, receive, send_with_scopes)


def _valid_token(scope: Scope) -> Token | None:
    app = scope.get("app")
    services = getattr(getattr(app, "state", None), "services", None)  # api.services.Services
    ledger = getattr(services, "ledger", None)
    if ledger is None:
        return None
    try:
        caller = authenticate(ledger.state, Headers(scope=scope).get("authorization"))
    except ApiError:
        return None
    return None if caller is None else caller.token
