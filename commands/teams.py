"""Handlers for teams: creation, membership and repository access."""

from __future__ import annotations

from commands import payloads as p
from commands.access import (
    find_org,
    find_readable_repo,
    find_team,
    find_user,
    is_org_owner,
    require_org_owner,
    require_repo_admin,
)
from commands.decision import (
    CONFLICT,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    Decision,
    HandlerContext,
    Rejection,
)
from domain.events import (
    TeamCreated,
    TeamMemberRemoved,
    TeamMemberSet,
    TeamRepoPermissionSet,
    TeamRepoRemoved,
)
from domain.names import team_slug, team_slug_v2
from domain.records import Org, Repo, Team, User
from domain.state import LedgerState


def create_team(state: LedgerState, cmd: p.TeamCreate, ctx: HandlerContext) -> Decision:
    org = find_org(state, cmd.org)
    if isinstance(org, Rejection):
        return org
    if denied := require_org_owner(state, ctx.actor, org):
        return denied
    slug = team_slug_v2(cmd.name) if ctx.rules.version >= 2 else team_slug(cmd.name)
    if state.team_by_slug(org.org_id, slug) is not None:
        return Rejection(CONFLICT, f"team {org.login}/{slug} already exists")
    return [
        TeamCreated(
            team_id=ctx.new_id(0),
            org_id=org.org_id,
            name=cmd.name,
            slug=slug,
            description=cmd.description,
            privacy=cmd.privacy,
        )
    ]


def _org_and_team(state: LedgerState, org_login: str, slug: str) -> tuple[Org, Team] | Rejection:
    org = find_org(state, org_login)
    if isinstance(org, Rejection):
        return org
    team = find_team(state, org, slug)
    if isinstance(team, Rejection):
        return team
    return org, team


def _may_manage_members(state: LedgerState, actor: User, org: Org, team: Team) -> bool:
    return is_org_owner(state, actor, org) or state.team_role(team.team_id, actor.user_id) == "maintainer"


def set_membership(state: LedgerState, cmd: p.TeamSetMembership, ctx: HandlerContext) -> Decision:
    found = _org_and_team(state, cmd.org, cmd.team_slug)
    if isinstance(found, Rejection):
        return found
    org, team = found
    if not _may_manage_members(state, ctx.actor, org, team):
        return Rejection(FORBIDDEN, "You must be an organization owner or a team maintainer.")
    user = find_user(state, cmd.user)
    if isinstance(user, Rejection):
        return user
    if state.org_role(org.org_id, user.user_id) is None:
        return Rejection(INVALID, f"{user.login} must be a member of {org.login} to join a team")
    if state.team_role(team.team_id, user.user_id) == cmd.role:
        return []
    return [TeamMemberSet(team_id=team.team_id, user_id=user.user_id, role=cmd.role)]


def remove_member(state: LedgerState, cmd: p.TeamRemoveMember, ctx: HandlerContext) -> Decision:
    found = _org_and_team(state, cmd.org, cmd.team_slug)
    if isinstance(found, Rejection):
        return found
    org, team = found
    user = find_user(state, cmd.user)
    if isinstance(user, Rejection):
        return user
    leaving = user.user_id == ctx.actor.user_id
    if not leaving and not _may_manage_members(state, ctx.actor, org, team):
        return Rejection(FORBIDDEN, "You must be an organization owner or a team maintainer.")
    if state.team_role(team.team_id, user.user_id) is None:
        return Rejection(NOT_FOUND, f"{user.login} is not a member of {org.login}/{team.slug}")
    return [TeamMemberRemoved(team_id=team.team_id, user_id=user.user_id)]


def _team_and_repo(
    state: LedgerState, actor: User, org_login: str, slug: str, owner: str, name: str
) -> tuple[Team, Repo] | Rejection:
    found = _org_and_team(state, org_login, slug)
    if isinstance(found, Rejection):
        return found
    org, team = found
    repo = find_readable_repo(state, actor, owner, name)
    if isinstance(repo, Rejection):
        return repo
    if repo.owner_id != org.org_id:
        return Rejection(INVALID, f"repository {repo.full_name} does not belong to {org.login}")
    if denied := require_repo_admin(state, actor, repo):
        return denied
    return team, repo


def set_repo_permission(state: LedgerState, cmd: p.TeamSetRepoPermission, ctx: HandlerContext) -> Decision:
    found = _team_and_repo(state, ctx.actor, cmd.org, cmd.team_slug, cmd.owner, cmd.repo)
    if isinstance(found, Rejection):
        return found
    team, repo = found
    if dict(state.teams_of_repo(repo.repo_id)).get(team.team_id) == cmd.permission:
        return []
    return [TeamRepoPermissionSet(team_id=team.team_id, repo_id=repo.repo_id, permission=cmd.permission)]


def remove_repo(state: LedgerState, cmd: p.TeamRemoveRepo, ctx: HandlerContext) -> Decision:
    found = _team_and_repo(state, ctx.actor, cmd.org, cmd.team_slug, cmd.owner, cmd.repo)
    if isinstance(found, Rejection):
        return found
    team, repo = found
    if team.team_id not in dict(state.teams_of_repo(repo.repo_id)):
        return Rejection(NOT_FOUND, f"team {team.slug} has no access to {repo.full_name}")
    return [TeamRepoRemoved(team_id=team.team_id, repo_id=repo.repo_id)]
