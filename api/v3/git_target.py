"""A readable repository's git objects for the REST routes: found, checked, read off the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from dulwich.repo import Repo

from adapters.git import browse
from adapters.git.store import GitStore
from api.errors import ApiError
from api.v3.deps import V3
from api.v3.git_shapes import RepoLinks

T = TypeVar("T")


@dataclass(frozen=True)
class GitTarget:
    """A readable repository and its finalized refs, captured before leaving the event loop."""

    store: GitStore
    repo_id: str
    owner: str
    name: str
    default_branch: str
    refs: dict[str, str]
    links: RepoLinks


def git_target(ctx: V3, owner: str, repo: str) -> GitTarget:
    """The repository (404 if the caller may not read it) with its refs; 503 without git."""
    row, _ = ctx.visible_repo(owner, repo)
    repo_id = row["repo_id"]
    store = ctx.reads.git(repo_id)
    full_name = f"{row['owner_login']}/{row['name']}"
    return GitTarget(
        store=store,
        repo_id=repo_id,
        owner=row["owner_login"],
        name=row["name"],
        default_branch=row["default_branch"],
        refs=ctx.reads.refs(repo_id),
        links=RepoLinks(ctx.urls, full_name, repo_id),
    )


async def read_git(target: GitTarget, work: Callable[[Repo], T]) -> T:
    """`work` over the opened repository in a worker thread; git reading errors become API errors."""

    def run() -> T:
        with target.store.open(target.repo_id) as repo:
            return work(repo)

    try:
        return await asyncio.to_thread(run)
    except browse.MissingObject as exc:
        raise ApiError(503, f"{exc}; try again shortly", {"Retry-After": "5"}) from None
    except browse.HistoryTooLong as exc:
        raise ApiError(422, f"{exc}; start from an older commit with sha=") from None
    except browse.BrowseError as exc:
        raise ApiError(422, str(exc)) from None
