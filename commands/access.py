"""Look-ups and authorization checks shared by the handlers.

They answer like GitHub: a missing name is 404, a private repository the actor cannot
read is also 404 (its existence never leaks), and a visible thing the actor may not
change is 403.
"""

from __future__ import annotations

from commands.decision import CONFLICT, FORBIDDEN, NOT_FOUND, Rejection
from domain.permissions import ADMIN, effective_permission, rank
from domain.records import Org, Repo, Team, User
from domain.state import LedgerState

ARCHIVED_MESSAGE = "Repository was archived so is read-only."
NEED_REPO_ADMIN = "Must have admin rights to Repository."
NEED_ORG_OWNER = "You must be an owner of this organization."
NEED_SITE_ADMIN = "Must be a site administrator."


def find_user(state: LedgerState, login: str) -> User | Rejection:
    user = state.user_by_login(login)
    return user if user is not None else Rejection(NOT_FOUND, f"user {login!r} not found")


def find_org(state: LedgerState, login: str) -> Org | Rejection:
    org = state.org_by_login(login)
    return org if org is not None else Rejection(NOT_FOUND, f"organization {login!r} not found")


def find_team(state: LedgerState, org: Org, slug: str) -> Team | Rejection:
    team = state.team_by_slug(org.org_id, slug)
    return team if team is not None else Rejection(NOT_FOUND, f"team {org.login}/{slug} not found")


def find_readable_repo(state: LedgerState, actor: User, owner: str, name: str) -> Repo | Rejection:
    """The repository if the actor can at least read it; 404 otherwise (even when it exists)."""
    repo = state.repo_by_name(owner, name)
    if repo is None or effective_permission(state, actor.user_id, repo.repo_id) is None:
        return Rejection(NOT_FOUND, f"repository {owner}/{name} not found")
    return repo


def is_repo_admin(state: LedgerState, actor: User, repo: Repo) -> bool:
    """Admin on the repo, ignoring the archive cap (admins may unarchive)."""
    perm = effective_permission(state, actor.user_id, repo.repo_id, ignore_archived=True)
    return perm is not None and rank(perm) >= rank(ADMIN)


def require_repo_admin(state: LedgerState, actor: User, repo: Repo) -> Rejection | None:
    """Admin on a repo that is not archived (archived repos only accept being unarchived)."""
    if not is_repo_admin(state, actor, repo):
        return Rejection(FORBIDDEN, NEED_REPO_ADMIN)
    if repo.archived:
        return Rejection(FORBIDDEN, ARCHIVED_MESSAGE)
    return None


def is_org_owner(state: LedgerState, actor: User, org: Org) -> bool:
    return actor.site_admin or state.org_role(org.org_id, actor.user_id) == "owner"


def require_org_owner(state: LedgerState, actor: User, org: Org) -> Rejection | None:
    return None if is_org_owner(state, actor, org) else Rejection(FORBIDDEN, NEED_ORG_OWNER)


def require_site_admin(actor: User) -> Rejection | None:
    return None if actor.site_admin else Rejection(FORBIDDEN, NEED_SITE_ADMIN)


def require_self_or_site_admin(actor: User, target: User) -> Rejection | None:
    if actor.site_admin or actor.user_id == target.user_id:
        return None
    return Rejection(FORBIDDEN, f"only {target.login} or a site administrator may do this")


def login_conflict(state: LedgerState, login: str) -> Rejection | None:
    if state.login_taken(login):
        return Rejection(CONFLICT, f"login {login!r} is already taken")
    return None
