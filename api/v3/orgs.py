"""Organizations, their memberships, teams, team memberships and team repository access."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from api.v3 import shapes
from api.v3.deps import (
    V3,
    GitHubBody,
    Reader,
    V3Route,
    Writer,
    command,
    created,
    no_content,
    not_found,
    ok,
)
from commands import scopes
from commands.payloads import Login, TeamName, Text
from domain.events import TeamRole
from domain.permissions import can_see_team

router = APIRouter(route_class=V3Route, tags=["v3: organizations"])

GitHubPermission = Literal["pull", "triage", "push", "maintain", "admin", "read", "write"]


class CreateOrgBody(GitHubBody):
    resource = "Organization"
    login: Login
    admin: Annotated[str, Field(min_length=1, max_length=100)]
    #: Accepted for compatibility; the ledger keeps no display name (`name` stays null).
    profile_name: str | None = None


class OrgMembershipBody(GitHubBody):
    resource = "Membership"
    role: Literal["admin", "member"] = "member"


class CreateTeamBody(GitHubBody):
    resource = "Team"
    name: TeamName
    description: Text | None = None
    privacy: Literal["secret", "closed"] | None = None


class TeamMembershipBody(GitHubBody):
    resource = "TeamMember"
    role: TeamRole = "member"


class TeamRepoBody(GitHubBody):
    resource = "TeamRepository"
    permission: GitHubPermission = "push"


def _public_repos(ctx: V3, owner_id: str) -> int:
    return ctx.reads.models.list_repos_for_owner(owner_id, None, 1, 1)[1]


def _org_json(ctx: V3, row: shapes.Json) -> shapes.Json:
    return shapes.org_full(ctx.urls, row, public_repos=_public_repos(ctx, row["org_id"]))


@router.post("/admin/organizations", status_code=201, summary="Create an organization (site administrators)")
async def create_org(body: CreateOrgBody, ctx: Writer) -> JSONResponse:
    receipt = await command(
        ctx,
        "org.create",
        {"login": body.login, "admin": body.admin},
        resource="Organization",
        field="login",
    )
    row = ctx.reads.org_by_id(receipt.result["org_id"])
    if row is None:
        raise not_found()
    return created(_org_json(ctx, row), receipt)


@router.get("/orgs/{org}", summary="An organization")
async def get_org(org: str, ctx: Reader) -> shapes.Json:
    ctx.check(scopes.ORG_PROFILE)
    row = ctx.reads.org(org)
    if row is None:
        raise not_found()
    return _org_json(ctx, row)


@router.put("/orgs/{org}/memberships/{user}", summary="Add a member or set their role (`admin` = owner)")
async def set_org_membership(
    org: str,
    user: str,
    ctx: Writer,
    body: Annotated[OrgMembershipBody | None, Body()] = None,
) -> JSONResponse:
    role = (body or OrgMembershipBody()).role
    receipt = await command(
        ctx,
        "org.set_membership",
        {"org": org, "user": user, "role": "owner" if role == "admin" else "member"},
        resource="Membership",
        field="role",
    )
    org_row = ctx.reads.org(org)
    user_row = ctx.reads.user(user)
    if org_row is None or user_row is None:
        raise not_found()
    role_now = ctx.state.org_role(org_row["org_id"], user_row["user_id"])
    if role_now is None:
        raise not_found()
    return ok(shapes.org_membership(ctx.urls, org_row, user_row, role_now), receipt)


@router.delete("/orgs/{org}/memberships/{user}", status_code=204, summary="Remove a member")
async def remove_org_membership(org: str, user: str, ctx: Writer) -> Response:
    receipt = await command(ctx, "org.remove_member", {"org": org, "user": user}, resource="Membership")
    return no_content(receipt)


@router.post("/orgs/{org}/teams", status_code=201, summary="Create a team")
async def create_team(org: str, body: CreateTeamBody, ctx: Writer) -> JSONResponse:
    payload: dict[str, str] = {"org": org, "name": body.name}
    if body.description is not None:
        payload["description"] = body.description
    if body.privacy is not None:
        payload["privacy"] = body.privacy
    receipt = await command(ctx, "team.create", payload, resource="Team", field="name")
    org_row = ctx.reads.org(org)
    team_row = ctx.reads.team(org, receipt.result["slug"])
    if org_row is None or team_row is None:
        raise not_found()
    body_json = shapes.team(
        ctx.urls,
        team_row,
        org_row,
        members=len(ctx.reads.models.team_members(team_row["team_id"])),
        repos=len(ctx.reads.models.team_repos(team_row["team_id"])),
        org_public_repos=_public_repos(ctx, org_row["org_id"]),
    )
    return created(body_json, receipt)


@router.get("/orgs/{org}/teams/{team_slug}", summary="A team (read:org); 404 to whoever may not see it")
async def get_team(org: str, team_slug: str, ctx: Reader) -> shapes.Json:
    ctx.check(scopes.READ_TEAM)
    org_row = ctx.reads.org(org)
    found = ctx.state.org_by_login(org)
    team = ctx.state.team_by_slug(found.org_id, team_slug) if found is not None else None
    if org_row is None or team is None or not can_see_team(ctx.state, ctx.viewer_id, team):
        raise not_found()
    team_row = ctx.reads.team(org, team.slug)
    if team_row is None:
        raise not_found()
    return shapes.team(
        ctx.urls,
        team_row,
        org_row,
        members=len(ctx.reads.models.team_members(team_row["team_id"])),
        repos=len(ctx.reads.models.team_repos(team_row["team_id"])),
        org_public_repos=_public_repos(ctx, org_row["org_id"]),
    )


@router.put("/orgs/{org}/teams/{team_slug}/memberships/{user}", summary="Add a team member or set their role")
async def set_team_membership(
    org: str,
    team_slug: str,
    user: str,
    ctx: Writer,
    body: Annotated[TeamMembershipBody | None, Body()] = None,
) -> JSONResponse:
    role = (body or TeamMembershipBody()).role
    receipt = await command(
        ctx,
        "team.set_membership",
        {"org": org, "team_slug": team_slug, "user": user, "role": role},
        resource="TeamMember",
        field="user",
    )
    team_row = ctx.reads.team(org, team_slug)
    user_row = ctx.reads.user(user)
    if team_row is None or user_row is None:
        raise not_found()
    member_role = ctx.state.team_role(team_row["team_id"], user_row["user_id"])
    if member_role is None:
        raise not_found()
    return ok(
        shapes.team_membership(ctx.urls, org, team_row["slug"], user_row["login"], member_role), receipt
    )


@router.delete(
    "/orgs/{org}/teams/{team_slug}/memberships/{user}", status_code=204, summary="Remove a team member"
)
async def remove_team_membership(org: str, team_slug: str, user: str, ctx: Writer) -> Response:
    receipt = await command(
        ctx,
        "team.remove_member",
        {"org": org, "team_slug": team_slug, "user": user},
        resource="TeamMember",
    )
    return no_content(receipt)


@router.put(
    "/orgs/{org}/teams/{team_slug}/repos/{owner}/{repo}",
    status_code=204,
    summary="Grant a team access to a repository",
)
async def set_team_repo(
    org: str,
    team_slug: str,
    owner: str,
    repo: str,
    ctx: Writer,
    body: Annotated[TeamRepoBody | None, Body()] = None,
) -> Response:
    permission = shapes.GITHUB_TO_LEDGER_PERMISSION[(body or TeamRepoBody()).permission]
    receipt = await command(
        ctx,
        "team.set_repo_permission",
        {"org": org, "team_slug": team_slug, "owner": owner, "repo": repo, "permission": permission},
        resource="TeamRepository",
        field="permission",
    )
    return no_content(receipt)
