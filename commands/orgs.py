"""Handlers for organizations and their membership."""

from __future__ import annotations

from commands import payloads as p
from commands.access import find_org, find_user, login_conflict, require_org_owner, require_site_admin
from commands.decision import INVALID, NOT_FOUND, Decision, HandlerContext, Rejection
from domain.events import Event, OrgCreated, OrgMemberRemoved, OrgMemberSet, TeamMemberRemoved
from domain.records import Org, User
from domain.state import LedgerState

LAST_OWNER = "an organization must keep at least one owner"


def create_org(state: LedgerState, cmd: p.OrgCreate, ctx: HandlerContext) -> Decision:
    if denied := require_site_admin(ctx.actor) or login_conflict(state, cmd.login):
        return denied
    admin = find_user(state, cmd.admin)
    if isinstance(admin, Rejection):
        return admin
    org_id = ctx.new_id(0)
    return [
        OrgCreated(org_id=org_id, login=cmd.login, created_by=ctx.actor.user_id),
        OrgMemberSet(org_id=org_id, user_id=admin.user_id, role="owner"),
    ]


def _is_last_owner(state: LedgerState, org: Org, user: User) -> bool:
    return state.org_role(org.org_id, user.user_id) == "owner" and state.org_owner_count(org.org_id) == 1


def set_membership(state: LedgerState, cmd: p.OrgSetMembership, ctx: HandlerContext) -> Decision:
    org = find_org(state, cmd.org)
    if isinstance(org, Rejection):
        return org
    if denied := require_org_owner(state, ctx.actor, org):
        return denied
    user = find_user(state, cmd.user)
    if isinstance(user, Rejection):
        return user
    current = state.org_role(org.org_id, user.user_id)
    if current == cmd.role:
        return []
    if cmd.role != "owner" and _is_last_owner(state, org, user):
        return Rejection(INVALID, LAST_OWNER)
    return [OrgMemberSet(org_id=org.org_id, user_id=user.user_id, role=cmd.role)]


def remove_member(state: LedgerState, cmd: p.OrgRemoveMember, ctx: HandlerContext) -> Decision:
    """Owners remove anyone, members may leave; the user also leaves every team of the org."""
    org = find_org(state, cmd.org)
    if isinstance(org, Rejection):
        return org
    user = find_user(state, cmd.user)
    if isinstance(user, Rejection):
        return user
    if user.user_id != ctx.actor.user_id and (denied := require_org_owner(state, ctx.actor, org)):
        return denied
    if state.org_role(org.org_id, user.user_id) is None:
        return Rejection(NOT_FOUND, f"{user.login} is not a member of {org.login}")
    if _is_last_owner(state, org, user):
        return Rejection(INVALID, LAST_OWNER)
    events: list[Event] = [
        TeamMemberRemoved(team_id=team.team_id, user_id=user.user_id)
        for team in state.teams_of_org(org.org_id)
        if state.team_role(team.team_id, user.user_id) is not None
    ]
    events.append(OrgMemberRemoved(org_id=org.org_id, user_id=user.user_id))
    return events
