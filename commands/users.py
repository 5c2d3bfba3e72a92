"""Handlers for users, their signing keys and their API tokens."""

from __future__ import annotations

from commands import payloads as p
from commands.access import find_user, login_conflict, require_self_or_site_admin, require_site_admin
from commands.decision import CONFLICT, NOT_FOUND, Decision, HandlerContext, Rejection
from domain.events import TokenIssued, TokenRevoked, UserCreated, UserKeyAdded
from domain.ids import key_id_for
from domain.state import LedgerState


def create_user(state: LedgerState, cmd: p.UserCreate, ctx: HandlerContext) -> Decision:
    denied = require_site_admin(ctx.actor) or login_conflict(state, cmd.login)
    if denied:
        return denied
    return [UserCreated(user_id=ctx.new_id(0), login=cmd.login, email=cmd.email, site_admin=False)]


def add_key(state: LedgerState, cmd: p.UserAddKey, ctx: HandlerContext) -> Decision:
    user = find_user(state, cmd.login)
    if isinstance(user, Rejection):
        return user
    if denied := require_self_or_site_admin(ctx.actor, user):
        return denied
    key_id = key_id_for(bytes.fromhex(cmd.public_key))
    if state.user_key(key_id) is not None:
        return Rejection(CONFLICT, "key is already in use")
    return [UserKeyAdded(user_id=user.user_id, key_id=key_id, public_key=cmd.public_key, title=cmd.title)]


def issue_token(state: LedgerState, cmd: p.TokenIssue, ctx: HandlerContext) -> Decision:
    user = find_user(state, cmd.login)
    if isinstance(user, Rejection):
        return user
    if denied := require_self_or_site_admin(ctx.actor, user):
        return denied
    if state.token_by_id(cmd.token_id) is not None:
        return Rejection(CONFLICT, f"token id {cmd.token_id!r} already exists")
    if state.token_by_hash(cmd.token_hash) is not None:
        return Rejection(CONFLICT, "a token with this hash already exists")
    return [
        TokenIssued(
            user_id=user.user_id,
            token_id=cmd.token_id,
            token_hash=cmd.token_hash,
            scopes=list(cmd.scopes),
            note=cmd.note,
        )
    ]


def revoke_token(state: LedgerState, cmd: p.TokenRevoke, ctx: HandlerContext) -> Decision:
    user = find_user(state, cmd.login)
    if isinstance(user, Rejection):
        return user
    if denied := require_self_or_site_admin(ctx.actor, user):
        return denied
    token = state.token_by_id(cmd.token_id)
    if token is None or token.user_id != user.user_id:
        return Rejection(NOT_FOUND, f"token {cmd.token_id!r} not found")
    if token.revoked:
        return Rejection(CONFLICT, f"token {cmd.token_id!r} is already revoked")
    return [TokenRevoked(user_id=user.user_id, token_id=token.token_id)]
