"""GitHub's effective permission of a user on a repository, computed from `LedgerState`.

Levels, lowest first: read < triage < write < maintain < admin. The effective permission
is the highest of every source: site admin (admin everywhere); the owner of a user-owned
repo (admin); org owners (admin) and org members (the org base permission, read) on an
org-owned repo; each team the user is in (maintainers and members alike) that has been
granted the repo; a direct collaborator grant; and read for everyone (anonymous too) on a
public repo. A deleted repo has no permissions at all. An archived repo is read-only:
every permission is capped at read, except that the admins may still unarchive it, which
is why callers can ask for the uncapped value with `ignore_archived=True`.

Teams follow GitHub too: a visible ("closed") team is seen by every member of its
organization, a secret team only by its own members and the organization's owners;
site admins see every team. Nobody outside the organization sees its teams.
"""

from __future__ import annotations

from domain.events import PERMISSION_ORDER
from domain.records import Repo, Team
from domain.state import LedgerState

READ, TRIAGE, WRITE, MAINTAIN, ADMIN = PERMISSION_ORDER
ORG_BASE_PERMISSION = READ  # GitHub's default base permission for organization members

_RANK = {name: rank for rank, name in enumerate(PERMISSION_ORDER)}


def rank(permission: str) -> int:
    """Position of a permission level (read = 0 ... admin = 4); ValueError for unknown names."""
    try:
        return _RANK[permission]
    except KeyError:
        raise ValueError(f"unknown permission {permission!r}") from None


def highest(*permissions: str | None) -> str | None:
    known = [p for p in permissions if p is not None]
    return max(known, key=rank) if known else None


def _explicit_permission(state: LedgerState, user_id: str, repo: Repo) -> str | None:
    """The highest grant the user holds on the repo itself, ignoring public read and archiving."""
    user = state.user(user_id)
    if user is None:
        return None
    if user.site_admin:
        return ADMIN
    if repo.owner_type == "User":
        if repo.owner_id == user_id:
            return ADMIN
        org_grant = None
    else:
        role = state.org_role(repo.owner_id, user_id)
        if role == "owner":
            return ADMIN
        org_grant = ORG_BASE_PERMISSION if role == "member" else None
    team_grants = [
        perm for team_id, perm in state.teams_of_repo(repo.repo_id) if state.team_role(team_id, user_id)
    ]
    return highest(org_grant, state.collaborator_permission(repo.repo_id, user_id), *team_grants)


def effective_permission(
    state: LedgerState, user_id: str | None, repo_id: str, *, ignore_archived: bool = False
) -> str | None:
    """The user's (None = anonymous) permission on the repo, or None for no access at all."""
    repo = state.repo(repo_id)
    if repo is None:
        return None
    explicit = _explicit_permission(state, user_id, repo) if user_id is not None else None
    best = highest(explicit, None if repo.private else READ)
    if best is not None and repo.archived and not ignore_archived:
        return READ
    return best


def can(state: LedgerState, user_id: str | None, repo_id: str, needed: str) -> bool:
    """Whether the user's effective permission on the repo is at least `needed`."""
    have = effective_permission(state, user_id, repo_id)
    return have is not None and rank(have) >= rank(needed)


def can_read(state: LedgerState, user_id: str | None, repo_id: str) -> bool:
    return effective_permission(state, user_id, repo_id) is not None


def access_list(
    state: LedgerState, repo_id: str, *, include_site_admins: bool = False, ignore_archived: bool = False
) -> tuple[tuple[str, str], ...]:
    """(user id, effective permission) for every user with explicit access, sorted by user id.

    Explicit access: the owning user, org owners and members, members of granted teams and
    direct collaborators; site admins (admin everywhere) only when asked. The permission is
    the user's effective one (a site admin who is also a collaborator shows as admin).
    Public read for everyone else is not listed.
    """
    repo = state.repo(repo_id)
    if repo is None:
        return ()
    candidates: set[str] = set()
    if repo.owner_type == "User":
        candidates.add(repo.owner_id)
    else:
        candidates.update(user_id for user_id, _ in state.org_members(repo.owner_id))
    for team_id, _ in state.teams_of_repo(repo_id):
        candidates.update(user_id for user_id, _ in state.team_members(team_id))
    candidates.update(user_id for user_id, _ in state.collaborators(repo_id))
    if include_site_admins:
        candidates.update(state.site_admins())
    out: list[tuple[str, str]] = []
    for user_id in sorted(candidates):
        perm = effective_permission(state, user_id, repo_id, ignore_archived=ignore_archived)
        if perm is not None:
            out.append((user_id, perm))
    return tuple(out)


def can_see_team(state: LedgerState, user_id: str | None, team: Team) -> bool:
    """Whether the user (None = anonymous) may know the team exists (see the module docstring)."""
    if user_id is None:
        return False
    user = state.user(user_id)
    if user is None:
        return False
    if user.site_admin:
        return True
    role = state.org_role(team.org_id, user_id)
    if role is None:
        return False
    if role == "owner" or team.privacy != "secret":
        return True
    return state.team_role(team.team_id, user_id) is not None
