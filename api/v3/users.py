"""Users: site-admin user creation and impersonation tokens, the authenticated user, public
profiles, and the user's keys.

Keys: Stele's user keys are the Ed25519 keys a user signs transactions with. GitHub's
public-key routes manage them in OpenSSH's `ssh-ed25519 AAAA...` form (the only key type
they take), so GitHub clients can add and list them; the key id is the ledger's key id
mapped to an integer, as for every other id.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import Field, field_validator

from api.auth import new_token
from api.errors import ApiError
from api.v3 import shapes
from api.v3.deps import (
    V3,
    GitHubBody,
    Reader,
    V3Route,
    ValidationFailed,
    Writer,
    command,
    created,
    no_content,
    not_found,
)
from commands import scopes
from commands.access import NEED_SITE_ADMIN
from commands.payloads import Email, Login
from domain.ids import key_id_for
from domain.records import User, UserKey

router = APIRouter(route_class=V3Route, tags=["v3: users"])


class CreateUserBody(GitHubBody):
    resource = "User"
    login: Login
    email: Email


class ImpersonationTokenBody(GitHubBody):
    resource = "OauthAccess"
    scopes: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=64)]

    @field_validator("scopes")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - scopes.KNOWN_SCOPES)
        if unknown:
            raise ValueError(f"unknown scopes: {', '.join(unknown)}")
        return value


class KeyBody(GitHubBody):
    resource = "PublicKey"
    title: Annotated[str, Field(max_length=256)] = ""
    key: Annotated[str, Field(min_length=1, max_length=4096)]


#: Token ids of impersonation tokens start with this, so DELETE revokes only those.
IMPERSONATION_PREFIX = "impersonation-"
IMPERSONATION_NOTE = "impersonation token"


def _repo_counts(ctx: V3, owner_id: str) -> tuple[int, int]:
    """(public, private) repositories of an owner, from the read models."""
    _, public = ctx.reads.models.list_repos_for_owner(owner_id, None, 1, 1)
    _, visible_to_owner = ctx.reads.models.list_repos_for_owner(owner_id, owner_id, 1, 1)
    return public, visible_to_owner - public


@router.post("/admin/users", status_code=201, summary="Create a user (site administrators)")
async def create_user(body: CreateUserBody, ctx: Writer) -> JSONResponse:
    receipt = await command(
        ctx, "user.create", {"login": body.login, "email": body.email}, resource="User", field="login"
    )
    row = ctx.reads.user_by_id(receipt.result["user_id"])
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
    granted = scopes.normalized(body.scopes)  # stored as GitHub stores them
    token, digest = new_token()
    uid = str(uuid.uuid4())  # API layer: a fresh id the ledger records as given
    token_id = IMPERSONATION_PREFIX + uid
    payload = {
        "login": login,
        "token_id": token_id,
        "token_hash": digest,
        "scopes": granted,
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
        "scopes": granted,
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
    ctx.check(scopes.SITE_ADMINISTRATION)  # also when there is nothing to revoke
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
    """The private profile with `user` or `read:user`; otherwise the public one (and the
    email with `user:email`), as GitHub answers a token without those scopes."""
    caller = ctx.require()
    ctx.check(scopes.PRIVATE_PROFILE)
    row = ctx.reads.user_by_id(caller.user.user_id)
    if row is None:
        raise not_found()
    public, private = _repo_counts(ctx, caller.user.user_id)
    if not ctx.has(scopes.PRIVATE_PROFILE):
        return shapes.user_full(ctx.urls, row, public_repos=public, show_email=ctx.has(scopes.EMAIL))
    return shapes.user_private(ctx.urls, row, public_repos=public, private_repos=private)


@router.get("/users/{login}", summary="A user (or organization) by login")
async def get_user(login: str, ctx: Reader) -> shapes.Json:
    ctx.check(scopes.PUBLIC_PROFILE)
    row = ctx.reads.user(login)
    if row is not None:
        public, _ = _repo_counts(ctx, row["user_id"])
        show_email = ctx.viewer_id == row["user_id"] and ctx.has(scopes.EMAIL)
        return shapes.user_full(ctx.urls, row, public_repos=public, show_email=show_email)
    org = ctx.reads.org(login)
    if org is not None:
        public, _ = _repo_counts(ctx, org["org_id"])
        return shapes.org_as_user(ctx.urls, org, public_repos=public)
    raise not_found()


# -- keys ----------------------------------------------------------------------------------

_SSH_ED25519 = b"ssh-ed25519"


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def ssh_ed25519(public_key_hex: str) -> str:
    """An Ed25519 public key (hex) in OpenSSH's one-line form."""
    blob = _ssh_string(_SSH_ED25519) + _ssh_string(bytes.fromhex(public_key_hex))
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


def parse_ssh_ed25519(line: str) -> str | None:
    """The hex Ed25519 public key of an OpenSSH `ssh-ed25519 AAAA... [comment]` line, or None."""
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    prefix = _ssh_string(_SSH_ED25519) + (32).to_bytes(4, "big")
    if len(blob) != len(prefix) + 32 or not blob.startswith(prefix):
        return None
    return blob[len(prefix) :].hex()


def _key_json(ctx: V3, key: UserKey) -> shapes.Json:
    key_id = shapes.gh_id(key.key_id)
    return {
        "id": key_id,
        "key": ssh_ed25519(key.public_key),
        "url": f"{ctx.urls.api}/user/keys/{key_id}",
        "title": key.title,
        "created_at": None,  # the ledger keeps no time per key
        "verified": True,
        "read_only": False,
        "last_used": None,
    }


def _own_keys(ctx: V3) -> tuple[UserKey, ...]:
    caller = ctx.require()
    ctx.check(scopes.READ_KEYS)
    return ctx.state.user_keys(caller.user.user_id)


@router.get("/user/keys", summary="The authenticated user's keys (read:public_key)")
async def list_keys(ctx: Reader) -> list[shapes.Json]:
    return [_key_json(ctx, key) for key in _own_keys(ctx)]


@router.get("/user/keys/{key_id}", summary="One of the authenticated user's keys (read:public_key)")
async def get_key(key_id: int, ctx: Reader) -> shapes.Json:
    for key in _own_keys(ctx):
        if shapes.gh_id(key.key_id) == key_id:
            return _key_json(ctx, key)
    raise not_found()


@router.post("/user/keys", status_code=201, summary="Add a key (write:public_key; ssh-ed25519 only)")
async def add_key(body: KeyBody, ctx: Writer) -> JSONResponse:
    caller = ctx.require()
    public_key = parse_ssh_ed25519(body.key)
    if public_key is None:
        raise ValidationFailed.one(
            "PublicKey",
            "custom",
            "key must be an OpenSSH ssh-ed25519 public key (ssh-ed25519 AAAA...)",
            "key",
        )
    payload = {"login": caller.user.login, "public_key": public_key, "title": body.title}
    receipt = await command(ctx, "user.add_key", payload, resource="PublicKey", field="key")
    key = ctx.state.user_key(key_id_for(bytes.fromhex(public_key)))
    if key is None:
        raise not_found()
    return created(_key_json(ctx, key), receipt)


@router.get("/users/{login}/keys", summary="A user's public keys")
async def list_user_keys(login: str, ctx: Reader) -> list[shapes.Json]:
    user = ctx.state.user_by_login(login)
    if user is None:
        raise not_found()
    return [
        {"id": shapes.gh_id(key.key_id), "key": ssh_ed25519(key.public_key)}
        for key in ctx.state.user_keys(user.user_id)
    ]
