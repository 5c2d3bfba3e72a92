"""Branches and branch protection.

Branch tips come from the finalized ledger state at the height the request is answered
at; protection from the read models. Setting and removing protection are ledger
commands (`repo.set_branch_protection`, `repo.remove_branch_protection`), whose handlers
check at apply time that the caller administers the repository, so these routes check
nothing beyond what every repository route does (404 for a repository the caller may
not read).

Stele's protection has fewer knobs than GitHub's: no force pushes, no deletions, a
number of approving reviews (which means "only through a pull request"), and a list of
users who may push. A PUT that asks for anything else (status checks, team or app
restrictions, linear history, ...) is refused with 422 naming each such field, rather
than accepted and silently not enforced.
"""

from __future__ import annotations

from typing import Annotated, Any

from dulwich.repo import Repo
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field

from adapters.git import browse
from api.errors import ApiError
from api.pagination import Page, link_header, page_params
from api.v3 import git_shapes, shapes
from api.v3.contents import HEADS
from api.v3.deps import V3, GitHubBody, Reader, V3Route, ValidationFailed, Writer, command, no_content, ok
from api.v3.git_shapes import RepoLinks
from api.v3.git_target import git_target, read_git
from api.v3.shapes import Json
from commands.payloads import MAX_REVIEW_COUNT
from domain.records import BranchProtection

router = APIRouter(route_class=V3Route, tags=["v3: branches"])

RESOURCE = "ProtectedBranch"
BRANCH_NOT_PROTECTED = "Branch not protected"
BRANCH_NOT_FOUND = "Branch not found"


# ---------------------------------------------------------------------------- request bodies


class StatusChecksBody(GitHubBody):
    resource = RESOURCE
    strict: bool = False
    contexts: list[str] = []
    checks: list[dict[str, Any]] = []


class ReviewsBody(GitHubBody):
    resource = RESOURCE
    dismissal_restrictions: dict[str, Any] | None = None
    dismiss_stale_reviews: bool = False
    require_code_owner_reviews: bool = False
    required_approving_review_count: Annotated[int, Field(ge=0, le=MAX_REVIEW_COUNT)] = 1
    require_last_push_approval: bool = False
    bypass_pull_request_allowances: dict[str, Any] | None = None


class RestrictionsBody(GitHubBody):
    resource = RESOURCE
    users: list[str] = []
    teams: list[str] = []
    apps: list[str] = []


class ProtectionBody(GitHubBody):
    """GitHub's PUT body; the four objects GitHub requires may be left out here (as null)."""

    resource = RESOURCE
    required_status_checks: StatusChecksBody | None = None
    enforce_admins: bool | None = None
    required_pull_request_reviews: ReviewsBody | None = None
    restrictions: RestrictionsBody | None = None
    required_linear_history: bool | None = None
    allow_force_pushes: bool | None = None
    allow_deletions: bool | None = None
    block_creations: bool | None = None
    required_conversation_resolution: bool | None = None
    lock_branch: bool | None = None
    allow_fork_syncing: bool | None = None


#: Settings Stele has no rule for; refused when true.
_UNSUPPORTED_FLAGS = {
    "required_linear_history": "required linear history",
    "block_creations": "blocking branch creation",
    "required_conversation_resolution": "required conversation resolution",
    "lock_branch": "locking a branch",
    "allow_fork_syncing": "fork syncing",
}


def _unsupported(field: str, message: str) -> Json:
    return {"resource": RESOURCE, "code": "invalid", "field": field, "message": message}


def _has_any(allowances: dict[str, Any] | None) -> bool:
    """Whether a GitHub allowance object (`{"users": [...], "teams": [...], ...}`) names anyone."""
    return allowances is not None and any(bool(v) for v in allowances.values())


def _payload(owner: str, repo: str, branch: str, body: ProtectionBody) -> dict[str, Any]:
    """The ledger's `BranchProtectionSet` payload; 422 listing every setting Stele cannot enforce."""
    errors: list[Json] = []
    checks = body.required_status_checks
    if checks is not None and (checks.contexts or checks.checks or checks.strict):
        errors.append(
            _unsupported(
                "required_status_checks",
                "required status checks are not supported (Stele has no status checks yet); send null",
            )
        )
    reviews = body.required_pull_request_reviews
    count = 0
    if reviews is not None:
        count = reviews.required_approving_review_count
        if count == 0:
            errors.append(
                _unsupported(
                    "required_pull_request_reviews.required_approving_review_count",
                    "Stele requires pull requests only together with at least one approving review; "
                    f"use 1 to {MAX_REVIEW_COUNT}, or send required_pull_request_reviews: null",
                )
            )
        for name in ("dismiss_stale_reviews", "require_code_owner_reviews", "require_last_push_approval"):
            if getattr(reviews, name):
                errors.append(
                    _unsupported(f"required_pull_request_reviews.{name}", f"{name} is not supported")
                )
        for name in ("dismissal_restrictions", "bypass_pull_request_allowances"):
            if _has_any(getattr(reviews, name)):
                errors.append(
                    _unsupported(f"required_pull_request_reviews.{name}", f"{name} is not supported")
                )
    pushers: list[str] = []
    restrictions = body.restrictions
    if restrictions is not None:
        pushers = restrictions.users
        if restrictions.teams:
            errors.append(
                _unsupported("restrictions.teams", "team push restrictions are not supported; list users")
            )
        if restrictions.apps:
            errors.append(_unsupported("restrictions.apps", "app push restrictions are not supported"))
        if not pushers and not restrictions.teams and not restrictions.apps:
            errors.append(
                _unsupported(
                    "restrictions.users",
                    "restrictions without users would let only admins push, which Stele cannot express; "
                    "list the users who may push, or send restrictions: null",
                )
            )
        if body.enforce_admins and pushers:
            errors.append(
                _unsupported(
                    "enforce_admins",
                    "repository admins may always push to a branch whose pushers are restricted; "
                    "enforce_admins cannot be combined with restrictions",
                )
            )
    for name, what in _UNSUPPORTED_FLAGS.items():
        if getattr(body, name):
            errors.append(_unsupported(name, f"{what} is not supported"))
    if errors:
        raise ValidationFailed(errors)
    return {
        "owner": owner,
        "repo": repo,
        "branch": branch,
        "allow_force_pushes": bool(body.allow_force_pushes),
        "allow_deletions": bool(body.allow_deletions),
        "required_approving_review_count": count,
        "restrict_pushers": pushers,
    }


# ---------------------------------------------------------------------------- protection


def _protection_json(ctx: V3, row: Json, protection: BranchProtection) -> Json:
    links = RepoLinks(ctx.urls, f"{row['owner_login']}/{row['name']}", row["repo_id"])
    pushers = []
    for user_id in protection.restrict_pushers:
        user = ctx.reads.user_by_id(user_id)
        if user is not None:
            pushers.append(shapes.user_simple(ctx.urls, user))
    return git_shapes.protection(links, protection, pushers)


# Registered before `/branches/{branch:path}`, which would otherwise take `x/protection`.


@router.get("/repos/{owner}/{repo}/branches/{branch:path}/protection", summary="A branch's protection")
async def get_protection(owner: str, repo: str, branch: str, ctx: Reader) -> Json:
    row, _ = ctx.visible_repo(owner, repo)
    protection = ctx.reads.protection(row["repo_id"], branch)
    if protection is None:
        raise ApiError(404, BRANCH_NOT_PROTECTED)
    return _protection_json(ctx, row, protection)


@router.put(
    "/repos/{owner}/{repo}/branches/{branch:path}/protection",
    summary="Protect a branch (repository admins); replaces the whole protection",
)
async def set_protection(
    owner: str, repo: str, branch: str, body: ProtectionBody, ctx: Writer
) -> JSONResponse:
    receipt = await command(
        ctx, "repo.set_branch_protection", _payload(owner, repo, branch, body), resource=RESOURCE
    )
    row, _ = ctx.visible_repo(owner, repo)
    protection = ctx.reads.protection(row["repo_id"], branch)
    if protection is None:  # removed again between the command and this read
        raise ApiError(404, BRANCH_NOT_PROTECTED)
    return ok(_protection_json(ctx, row, protection), receipt)


@router.delete(
    "/repos/{owner}/{repo}/branches/{branch:path}/protection",
    status_code=204,
    summary="Remove a branch's protection (repository admins)",
)
async def remove_protection(owner: str, repo: str, branch: str, ctx: Writer) -> Response:
    receipt = await command(
        ctx,
        "repo.remove_branch_protection",
        {"owner": owner, "repo": repo, "branch": branch},
        resource=RESOURCE,
    )
    return no_content(receipt)


# ---------------------------------------------------------------------------- branches


@router.get("/repos/{owner}/{repo}/branches", summary="Branches, by name; `protected` filters")
async def list_branches(
    owner: str,
    repo: str,
    request: Request,
    ctx: Reader,
    page: Annotated[Page, Depends(page_params)],
    protected: bool | None = None,
) -> JSONResponse:
    row, _ = ctx.visible_repo(owner, repo)
    repo_id = row["repo_id"]
    links = RepoLinks(ctx.urls, f"{row['owner_login']}/{row['name']}", repo_id)
    guarded = {p.branch for p in ctx.reads.protections(repo_id)}
    branches = [
        (ref[len(HEADS) :], sha)
        for ref, sha in ctx.state.refs(repo_id)
        if ref.startswith(HEADS) and (protected is None or (ref[len(HEADS) :] in guarded) == protected)
    ]
    chosen = branches[page.offset : page.offset + page.per_page]
    body = [git_shapes.branch_short(links, name, sha, name in guarded) for name, sha in chosen]
    link = link_header(request, page, len(branches))
    return JSONResponse(body, headers={"Link": link} if link else None)


@router.get("/repos/{owner}/{repo}/branches/{branch:path}", summary="A branch with its tip commit")
async def get_branch(owner: str, repo: str, branch: str, ctx: Reader) -> Json:
    target = git_target(ctx, owner, repo)
    sha = target.refs.get(HEADS + branch)
    if sha is None:
        raise ApiError(404, BRANCH_NOT_FOUND)
    protected = ctx.reads.protection(target.repo_id, branch) is not None

    def work(repo_: Repo) -> browse.CommitInfo:
        info = browse.get_commit(repo_, sha)
        if info is None:
            raise browse.MissingObject(sha)
        return info

    info = await read_git(target, work)
    return git_shapes.branch_full(target.links, branch, git_shapes.commit(target.links, info), protected)
