"""Repositories and their direct collaborators.

A private repository is 404 (never 403) to anyone without read access, anonymous
callers included, and to a token without the `repo` scope: reads check the viewer's
effective permission against the finalized state and the token's scopes, and the
ledger's handlers answer writes the same way at apply time. Lists leave out private
repositories for a token without `repo`.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse

from api.pagination import Page, link_header, page_params
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
    ok,
)
from commands import scopes
from commands.payloads import Branch, RepoName, Text
from domain.permissions import READ, effective_permission

router = APIRouter(route_class=V3Route, tags=["v3: repositories"])

GitHubPermission = Literal["pull", "triage", "push", "maintain", "admin", "read", "write"]
Visibility = Literal["public", "private", "internal"]


class CreateRepoBody(GitHubBody):
    resource = "Repository"
    name: RepoName
    description: Text | None = None
    private: bool | None = None
    visibility: Visibility | None = None
    default_branch: Branch | None = None


class UpdateRepoBody(GitHubBody):
    resource = "Repository"
    name: RepoName | None = None
    description: Text | None = None
    private: bool | None = None
    visibility: Visibility | None = None
    default_branch: Branch | None = None
    archived: bool | None = None


class CollaboratorBody(GitHubBody):
    resource = "Repository"
    permission: GitHubPermission = "push"


def _private(private: bool | None, visibility: str | None) -> bool | None:
    """The ledger's `private` from GitHub's `private` and `visibility` (which must agree)."""
    if visibility == "internal":
        raise ValidationFailed.one(
            "Repository",
            "invalid",
            "visibility 'internal' is not supported; use public or private",
            "visibility",
        )
    if visibility is None:
        return private
    wanted = visibility == "private"
    if private is not None and private != wanted:
        raise ValidationFailed.one(
            "Repository",
            "invalid",
            f"private={str(private).lower()} contradicts visibility={visibility}",
            "visibility",
        )
    return wanted


# -- shapes with owners --------------------------------------------------------------------


class _Owners:
    """Owner shapes (user or organization) by owner id, looked up once per request."""

    def __init__(self, ctx: V3) -> None:
        self.ctx = ctx
        self._cache: dict[str, tuple[shapes.Json, shapes.Json | None]] = {}

    def get(self, row: shapes.Json) -> tuple[shapes.Json, shapes.Json | None]:
        """(owner, organization or None) for a repos row."""
        owner_id = row["owner_id"]
        found = self._cache.get(owner_id)
        if found is None:
            urls, read = self.ctx.urls, self.ctx.reads.models
            if row["owner_type"] == "Organization":
                org = read.get_org_by_id(owner_id)
                login = org["login"] if org is not None else row["owner_login"]
                owner = shapes.simple_user(urls, login, owner_id, site_admin=False, kind="Organization")
                found = (owner, shapes.org_simple(urls, org) if org is not None else None)
            else:
                user = read.get_user_by_id(owner_id)
                found = (
                    shapes.user_simple(urls, user)
                    if user is not None
                    else shapes.simple_user(urls, row["owner_login"], owner_id, site_admin=False),
                    None,
                )
            self._cache[owner_id] = found
        return found


def _repo_json(ctx: V3, owners: _Owners, row: shapes.Json, level: str | None) -> shapes.Json:
    owner, org = owners.get(row)
    body = shapes.repo(ctx.urls, row, owner, level=level, show_permissions=ctx.caller is not None)
    if org is not None:
        body["organization"] = org
    return body


def _sees_private_repos(ctx: V3) -> bool:
    """Whether the caller's token may list private repositories (it holds `repo`)."""
    ctx.check(scopes.repo_read(private=False))
    return ctx.has(scopes.repo_read(private=True))


def _repo_after(ctx: V3, repo_id: str) -> shapes.Json:
    row = ctx.reads.repo_by_id(repo_id)
    if row is None:
        raise not_found()
    return _repo_json(ctx, _Owners(ctx), row, effective_permission(ctx.state, ctx.viewer_id, repo_id))


# -- creating and listing ------------------------------------------------------------------


async def _create(ctx: V3, owner: str, body: CreateRepoBody) -> JSONResponse:
    payload: dict[str, Any] = {"owner": owner, "name": body.name}
    private = _private(body.private, body.visibility)
    if private is not None:
        payload["private"] = private
    if body.description is not None:
        payload["description"] = body.description
    if body.default_branch is not None:
        payload["default_branch"] = body.default_branch
    receipt = await command(ctx, "repo.create", payload, resource="Repository", field="name")
    return created(_repo_after(ctx, receipt.result["repo_id"]), receipt)


@router.post("/user/repos", status_code=201, summary="Create a repository for the authenticated user")
async def create_user_repo(body: CreateRepoBody, ctx: Writer) -> JSONResponse:
    return await _create(ctx, ctx.require().user.login, body)


@router.post("/orgs/{org}/repos", status_code=201, summary="Create a repository in an organization")
async def create_org_repo(org: str, body: CreateRepoBody, ctx: Writer) -> JSONResponse:
    found = ctx.state.org_by_login(org)
    if found is None:
        raise not_found()
    return await _create(ctx, found.login, body)


def _page_response(
    request: Request, ctx: V3, rows: list[shapes.Json], page: Page, total: int
) -> JSONResponse:
    owners = _Owners(ctx)
    viewer = ctx.viewer_id
    items = []
    for row in rows:
        level = row.get("permission")
        if level is None and viewer is not None and not row["private"]:
            level = READ  # public read is implicit (no ACL row)
        items.append(_repo_json(ctx, owners, row, level))
    link = link_header(request, page, total)
    return JSONResponse(items, headers={"Link": link} if link else None)


@router.get("/user/repos", summary="Repositories the authenticated user owns or can access")
async def list_user_repos(
    request: Request, ctx: Reader, page: Annotated[Page, Depends(page_params)]
) -> JSONResponse:
    caller = ctx.require()
    rows, total = ctx.reads.models.list_repos_for_user(
        caller.user.user_id, page.page, page.per_page, public_only=not _sees_private_repos(ctx)
    )
    return _page_response(request, ctx, rows, page, total)


@router.get("/orgs/{org}/repos", summary="An organization's repositories the viewer can see")
async def list_org_repos(
    org: str, request: Request, ctx: Reader, page: Annotated[Page, Depends(page_params)]
) -> JSONResponse:
    org_row = ctx.reads.org(org)
    if org_row is None:
        raise not_found()
    viewer = ctx.viewer_id if _sees_private_repos(ctx) else None  # None: public ones only
    rows, total = ctx.reads.models.list_repos_for_owner(org_row["org_id"], viewer, page.page, page.per_page)
    return _page_response(request, ctx, rows, page, total)


# -- one repository ------------------------------------------------------------------------


@router.get("/repos/{owner}/{repo}", summary="A repository")
async def get_repo(owner: str, repo: str, ctx: Reader) -> shapes.Json:
    row, level = ctx.visible_repo(owner, repo)
    return _repo_json(ctx, _Owners(ctx), row, level)


@router.patch("/repos/{owner}/{repo}", summary="Update a repository (admins)")
async def update_repo(owner: str, repo: str, body: UpdateRepoBody, ctx: Writer) -> JSONResponse:
    payload: dict[str, Any] = {"owner": owner, "repo": repo}
    private = _private(body.private, body.visibility)
    if private is not None:
        payload["private"] = private
    for name in ("name", "description", "default_branch", "archived"):
        value = getattr(body, name)
        if value is not None:
            payload[name] = value
    before = ctx.state.repo_by_name(owner, repo)
    receipt = await command(ctx, "repo.update", payload, resource="Repository", field="name")
    if before is None:  # created between our look-up and the command: find it by its new name
        row = ctx.reads.repo(owner, body.name or repo)
        if row is None:
            raise not_found()
        repo_id = row["repo_id"]
    else:
        repo_id = before.repo_id
    return ok(_repo_after(ctx, repo_id), receipt)


@router.delete("/repos/{owner}/{repo}", status_code=204, summary="Delete a repository (admins)")
async def delete_repo(owner: str, repo: str, ctx: Writer) -> Response:
    receipt = await command(ctx, "repo.delete", {"owner": owner, "repo": repo}, resource="Repository")
    return no_content(receipt)


# -- collaborators -------------------------------------------------------------------------


@router.put(
    "/repos/{owner}/{repo}/collaborators/{user}",
    status_code=201,
    summary="Add a collaborator (directly: 201 with an accepted invitation, 204 when unchanged)",
)
async def add_collaborator(
    owner: str,
    repo: str,
    user: str,
    ctx: Writer,
    body: Annotated[CollaboratorBody | None, Body()] = None,
) -> Response:
    """GitHub sends an invitation; Stele grants the permission at once.

    201 carries an invitation-shaped object describing the grant (already in effect);
    204 means the user already had exactly this direct permission.
    """
    permission = shapes.GITHUB_TO_LEDGER_PERMISSION[(body or CollaboratorBody()).permission]
    receipt = await command(
        ctx,
        "collaborator.set",
        {"owner": owner, "repo": repo, "user": user, "permission": permission},
        resource="Repository",
        field="permission",
    )
    if receipt.events == 0:
        return no_content(receipt)
    caller = ctx.require()
    row = ctx.reads.repo(owner, repo)
    invitee = ctx.reads.user(user)
    if row is None or invitee is None:
        raise not_found()
    owners = _Owners(ctx)
    invitation_id = shapes.gh_id(receipt.tx_id)
    repository = _repo_json(
        ctx, owners, row, effective_permission(ctx.state, caller.user.user_id, row["repo_id"])
    )
    invitation = {
        "id": invitation_id,
        "node_id": receipt.tx_id,
        "repository": repository,
        "invitee": shapes.user_simple(ctx.urls, invitee),
        "inviter": shapes.simple_user(
            ctx.urls, caller.user.login, caller.user.user_id, site_admin=caller.user.site_admin
        ),
        "permissions": permission,
        "created_at": shapes.iso(time.time_ns() // 1_000_000),
        "expired": False,
        "url": f"{ctx.urls.api}/user/repository_invitations/{invitation_id}",
        "html_url": f"{repository['html_url']}/invitations",
    }
    return created(invitation, receipt)


@router.delete("/repos/{owner}/{repo}/collaborators/{user}", status_code=204, summary="Remove a collaborator")
async def remove_collaborator(owner: str, repo: str, user: str, ctx: Writer) -> Response:
    receipt = await command(
        ctx, "collaborator.remove", {"owner": owner, "repo": repo, "user": user}, resource="Repository"
    )
    return no_content(receipt)


@router.get(
    "/repos/{owner}/{repo}/collaborators/{user}/permission",
    summary="A user's permission on a repository",
)
async def collaborator_permission(owner: str, repo: str, user: str, ctx: Reader) -> shapes.Json:
    row, _ = ctx.visible_repo(owner, repo)
    target = ctx.reads.user(user)
    if target is None:
        raise not_found()
    level = ctx.reads.permission(target["user_id"], row["repo_id"])
    if level is None and not row["private"]:
        level = READ
    role_name = level or "none"
    return {
        "permission": shapes.legacy_permission(level),
        "role_name": role_name,
        "user": {
            **shapes.user_simple(ctx.urls, target),
            "permissions": shapes.permissions(level),
            "role_name": role_name,
        },
    }
