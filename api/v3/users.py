"""Users: site-admin user creation and impersonation tokens, the authenticated user, public profiles."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from api.auth import new_token
from api.errors import ApiError
from api.v3 import shapes
from api.v3.deps import V3, GitHubBody, Reader, V3Route, Writer, command, created, no_content, not_found
from commands.access import NEED_SITE_ADMIN
from commands.payloads import Email, Login
from domain.records import User

router = APIRouter(route_class=V3Route, tags=["v3: users"])


class CreateUserBody(GitHubBody):
    resource = "User"
    login: Login
    email: Email


class ImpersonationTokenBody(GitHubBody):
    resource = "OauthAccess"
    scopes: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=64)]


#: Token ids of impersonation tokens start with this, so DELETE revokes only those.
IMPERSONATION_PREFIX = "impersonation-"
IMPERSONATION_NOTE = "impersonation token"


def _repo_counts(ctx: V3, owner_id: str) -> tuple[int, int]:
    """(public, private) repositories of an owner, from the read models."""
    _, public = ctx.ledger.read.list_repos_for_owner(owner_id, None, 1, 1)
    _, visible_to_owner = ctx.ledger.read.list_repos_for_owner(owner_id, owner_id, 1, 1)
    return public, visible_to_owner - public


@router.post("/admin/users", status_code=201, summary="Create a user (site administrators)")
async def create_user(body: CreateUserBody, ctx: Writer) -> JSONResponse:
    receipt = await command(
        ctx, "user.create", {"login": body.login, "email": body.email}, resource="User", field="login"
    )
    row = ctx.ledger.read.get_user_by_id(receipt.result["user_id"])
    if row is None:
        raise not_found()
    return created(shapes.user_full(ctx.urls, row, public_repos=0, show_email=True), receipt)


@router.post(
    "/admin/users/{login}/authorizations",
    status_code=201,
    summary="Create an impersonation token (site administrators)",
)
async def create_impersonation_token(login: str, body: ImpersonationTokenBody, ctx: Writer) -> JSONResponse:
    """A new token on every call (GitHub may return an existing one; we never hold its plaintext).

    The token is in this response only: the ledger records its SHA-256, never the token.
    """
    _require_site_admin(ctx)
    token, digest = new_token()
    uid = str(uuid.uuid4())  # API layer: a fresh id the ledger records as given
    token_id = IMPERSONATION_PREFIX + uid
    payload = {
        "login": login,
        "token_id": token_id,
        "token_hash": digest,
        "scopes": list(body.scopes),
        "note": IMPERSONATION_NOTE,
    }
    receipt = await command(ctx, "token.issue", payload, resource="OauthAccess", field="scopes")
    owner = ctx.state.user_by_login(login)
    now = shapes.iso(time.time_ns() // 1_000_000)
    auth_id = shapes.gh_id(uid)
    url = f"{ctx.urls.api}/authorizations/{auth_id}"
    response = {
        "id": auth_id,
        "node_id": token_id,
        "url": url,
        "app": {"name": "Stele impersonation token", "url": f"{ctx.urls.base}/", "client_id": ""},
        "token": token,
        "hashed_token": digest,
        "token_last_eight": token[-8:],
        "note": IMPERSONATION_NOTE,
        "note_url": None,
        "created_at": now,
        "updated_at": now,
        "expires_at": None,
        "scopes": list(body.scopes),
        "fingerprint": None,
        "user": None if owner is None else _simple(ctx, owner),
    }
    return created(response, receipt)


@router.delete(
    "/admin/users/{login}/authorizations",
    status_code=204,
    summary="Revoke a user's impersonation tokens (site administrators)",
)
async def delete_impersonation_tokens(login: str, ctx: Writer) -> Response:
    """Revokes every active token issued through the route above (one `token.revoke` each)."""
    _require_site_admin(ctx)
    user = ctx.state.user_by_login(login)
    if user is None:
        raise not_found()
    receipt = None
    for token in ctx.state.tokens_of_user(user.user_id):
        if token.revoked or not token.token_id.startswith(IMPERSONATION_PREFIX):
            continue
        payload = {"login": user.login, "token_id": token.token_id}
        receipt = await command(ctx, "token.revoke", payload, resource="OauthAccess")
    if receipt is None:
        return Response(status_code=204)
    return no_content(receipt)


def _require_site_admin(ctx: V3) -> None:
    if not ctx.require().user.site_admin:
        raise ApiError(403, NEED_SITE_ADMIN)


def _simple(ctx: V3, user: User) -> shapes.Json:
    return shapes.simple_user(ctx.urls, user.login, user.user_id, site_admin=user.site_admin)


@router.get("/user", summary="The authenticated user")
async def get_authenticated_user(ctx: Reader) -> shapes.Json:
    caller = ctx.require()
    row = ctx.ledger.read.get_user_by_id(caller.user.user_id)
    if row is None:
        raise not_found()
    public, private = _repo_counts(ctx, caller.user.user_id)
    return shapes.user_private(ctx.urls, row, public_repos=public, private_repos=private)


@router.get("/users/{login}", summary="A user (or organization) by login")
async def get_user(login: str, ctx: Reader) -> shapes.Json:
    row = ctx.ledger.read.get_user(login)
    if row is not None:
        public, _ = _repo_counts(ctx, row["user_id"])
        show_email = ctx.viewer_id == row["user_id"]
        return shapes.user_full(ctx.urls, row, public_repos=public, show_email=show_email)
    org = ctx.ledger.read.get_org(login)
    if org is not None:
        public, _ = _repo_counts(ctx, org["org_id"])
        return shapes.org_as_user(ctx.urls, org, public_repos=public)
    raise not_found()
