"""Handlers for repositories and their direct collaborators."""

from __future__ import annotations

from commands import payloads as p
from commands.access import (
    ARCHIVED_MESSAGE,
    NEED_REPO_ADMIN,
    find_readable_repo,
    find_user,
    is_repo_admin,
    require_repo_admin,
)
from commands.decision import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, Decision, HandlerContext, Rejection
from domain.events import (
    CollaboratorRemoved,
    CollaboratorSet,
    Event,
    OwnerType,
    RepoCreated,
    RepoDeleted,
    RepoUpdated,
)
from domain.state import LedgerState


def create_repo(state: LedgerState, cmd: p.RepoCreate, ctx: HandlerContext) -> Decision:
    """A user creates repos for themself; org members create them in their org.

    As on GitHub, an org member who is not an owner gets admin on the repo they create
    (as a direct collaborator); owners and site admins already have it.
    """
    actor = ctx.actor
    owner_type: OwnerType
    user_owner = state.user_by_login(cmd.owner)
    org_owner = state.org_by_login(cmd.owner) if user_owner is None else None
    if user_owner is not None:
        owner_id, owner_type, owner_login = user_owner.user_id, "User", user_owner.login
        if not actor.site_admin and actor.user_id != owner_id:
            return Rejection(FORBIDDEN, f"You cannot create repositories for {owner_login}.")
        creator_grant = False
    elif org_owner is not None:
        owner_id, owner_type, owner_login = org_owner.org_id, "Organization", org_owner.login
        role = state.org_role(owner_id, actor.user_id)
        if not actor.site_admin and role is None:
            return Rejection(
                FORBIDDEN, f"You must be a member of {owner_login} to create repositories in it."
            )
        creator_grant = role == "member" and not actor.site_admin
    else:
        return Rejection(NOT_FOUND, f"owner {cmd.owner!r} not found")
    if state.repo_by_name(owner_login, cmd.name) is not None:
        return Rejection(CONFLICT, f"name {cmd.name!r} already exists on this account")
    repo_id = ctx.new_id(0)
    events: list[Event] = [
        RepoCreated(
            repo_id=repo_id,
            owner_id=owner_id,
            owner_type=owner_type,
            owner_login=owner_login,
            name=cmd.name,
            description=cmd.description,
            private=cmd.private,
            default_branch=cmd.default_branch,
        )
    ]
    if creator_grant:
        events.append(CollaboratorSet(repo_id=repo_id, user_id=actor.user_id, permission="admin"))
    return events


def update_repo(state: LedgerState, cmd: p.RepoUpdate, ctx: HandlerContext) -> Decision:
    """Admins change settings; an archived repo accepts only an update that unarchives it."""
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    if not is_repo_admin(state, ctx.actor, repo):
        return Rejection(FORBIDDEN, NEED_REPO_ADMIN)
    if repo.archived and cmd.archived is not False:
        return Rejection(FORBIDDEN, ARCHIVED_MESSAGE)
    changes: dict[str, str | bool] = {}
    if cmd.name is not None and cmd.name != repo.name:
        clash = state.repo_by_name(repo.owner_login, cmd.name)
        if clash is not None and clash.repo_id != repo.repo_id:
            return Rejection(CONFLICT, f"name {cmd.name!r} already exists on this account")
        changes["name"] = cmd.name
    if cmd.description is not None and cmd.description != repo.description:
        changes["description"] = cmd.description
    if cmd.private is not None and cmd.private != repo.private:
        changes["private"] = cmd.private
    if cmd.default_branch is not None and cmd.default_branch != repo.default_branch:
        changes["default_branch"] = cmd.default_branch
    if cmd.archived is not None and cmd.archived != repo.archived:
        changes["archived"] = cmd.archived
    return [RepoUpdated(repo_id=repo.repo_id, changes=changes)] if changes else []


def delete_repo(state: LedgerState, cmd: p.RepoDelete, ctx: HandlerContext) -> Decision:
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    if denied := require_repo_admin(state, ctx.actor, repo):
        return denied
    return [RepoDeleted(repo_id=repo.repo_id)]


def set_collaborator(state: LedgerState, cmd: p.CollaboratorSet, ctx: HandlerContext) -> Decision:
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    if denied := require_repo_admin(state, ctx.actor, repo):
        return denied
    user = find_user(state, cmd.user)
    if isinstance(user, Rejection):
        return user
    if repo.owner_type == "User" and repo.owner_id == user.user_id:
        return Rejection(INVALID, "the repository owner cannot be a collaborator")
    if state.collaborator_permission(repo.repo_id, user.user_id) == cmd.permission:
        return []
    return [CollaboratorSet(repo_id=repo.repo_id, user_id=user.user_id, permission=cmd.permission)]


def remove_collaborator(state: LedgerState, cmd: p.CollaboratorRemove, ctx: HandlerContext) -> Decision:
    """Admins remove anyone; a collaborator may remove themself."""
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    user = find_user(state, cmd.user)
    if isinstance(user, Rejection):
        return user
    if user.user_id == ctx.actor.user_id:
        if repo.archived:
            return Rejection(FORBIDDEN, ARCHIVED_MESSAGE)
    elif denied := require_repo_admin(state, ctx.actor, repo):
        return denied
    if state.collaborator_permission(repo.repo_id, user.user_id) is None:
        return Rejection(NOT_FOUND, f"{user.login} is not a collaborator on {repo.full_name}")
    return [CollaboratorRemoved(repo_id=repo.repo_id, user_id=user.user_id)]
