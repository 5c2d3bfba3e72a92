"""Git data over REST: refs, commits, contents, READMEs and archives of a repository.

Which refs exist, and where they point, comes from the finalized ledger state at the
height the request is answered at (read before any await); the objects come from the
node's bare repository, read by `adapters.git.browse` in a worker thread so that large
trees and long histories never hold up the event loop. Objects are never deleted, so
whatever a finalized ref names can be read.

Like every repository route, a repository the caller may not read is 404. Beyond that,
GitHub's answers: 409 "Git Repository is empty." for refs and commits of a repository
nobody pushed to (404 "This repository is empty." for contents), 404 "No commit found
for the ref X" / 422 "No commit found for SHA: X" for names that resolve to nothing,
503 when git is not enabled on this node or a finalized object has not reached it.

Memory: no request holds a large blob. Sizes come from object headers; files up to
1 MB are read in-process, larger raw files and every archive (tarball, zipball) are
streamed by C git, and those, like commit diffs, are expensive reads that take one of
the node's few slots (`api.git_reads`: 503 with Retry-After when all are taken, and a
time limit on each stream).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from dulwich.repo import Repo
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from adapters.git import browse
from adapters.git.archive import ARCHIVE_MEDIA_TYPES, ArchiveFormat, archive_command, blob_command
from adapters.git.browse import CommitInfo, Entry, Kind, Listed
from api.errors import ApiError
from api.git_reads import read_limits, stream_git
from api.pagination import Page, link_header, page_params
from api.v3 import git_shapes
from api.v3.deps import V3, Reader, V3Route, ValidationFailed, not_found
from api.v3.git_target import GitTarget, git_target, read_git
from api.v3.shapes import Json

router = APIRouter(route_class=V3Route, tags=["v3: git data"])

T = TypeVar("T")

#: Files up to this size come inline (base64) in JSON; larger ones as "encoding": "none" (GitHub's 1 MB).
MAX_INLINE_BYTES = 1024 * 1024
#: The largest file served raw (GitHub's 100 MB); larger ones answer 403.
MAX_RAW_BYTES = 100 * 1024 * 1024
#: Where `GET /readme` looks, in GitHub's order.
README_DIRS = (".github", "", "docs")

HEADS = "refs/heads/"
EMPTY_GIT = "Git Repository is empty."
EMPTY_CONTENTS = "This repository is empty."
_MEDIA = re.compile(r"^application/vnd\.github(?:\.v3)?\.(raw|object|sha|html|diff|patch)(?:\+json)?$")


# ---------------------------------------------------------------------------- plumbing


def media(request: Request) -> str | None:
    """The custom media type asked for in Accept (`raw`, `object`, `sha`, ...), if any."""
    for part in request.headers.get("accept", "").split(","):
        match = _MEDIA.match(part.split(";")[0].strip().lower())
        if match is not None:
            return match.group(1)
    return None


def _commit_or(repo: Repo, target: GitTarget, spec: str, error: ApiError) -> CommitInfo:
    sha = browse.resolve(repo, target.refs, spec)
    if sha is None:
        raise error
    info = browse.get_commit(repo, sha)
    if info is None:
        raise browse.MissingObject(sha)
    return info


def _page(items: list[T], page: Page) -> list[T]:
    return items[page.offset : page.offset + page.per_page]


def _list_response(request: Request, body: list[Json], page: Page, total: int) -> JSONResponse:
    link = link_header(request, page, total)
    return JSONResponse(body, headers={"Link": link} if link else None)


# ---------------------------------------------------------------------------- refs


def _full_ref(ref: str) -> str:
    """`heads/main` (GitHub's form in URLs) or `refs/heads/main` as the full name."""
    ref = ref.lstrip("/")
    return ref if ref.startswith("refs/") else f"refs/{ref}"


async def _ref_bodies(target: GitTarget, refs: list[tuple[str, str]]) -> list[Json]:
    """Git-ref shapes; tags are read to tell annotated tags (`tag`) from lightweight ones."""

    def types(repo: Repo) -> list[str]:
        out = []
        for ref, sha in refs:
            kind = "commit" if ref.startswith(HEADS) else browse.object_type(repo, sha)
            if kind is None:
                raise browse.MissingObject(sha)
            out.append(kind)
        return out

    if all(ref.startswith(HEADS) for ref, _ in refs):
        kinds = ["commit"] * len(refs)  # the ledger only lets branches point at commits
    else:
        kinds = await read_git(target, types)
    return [git_shapes.git_ref(target.links, r, s, k) for (r, s), k in zip(refs, kinds, strict=True)]


def _matching(target: GitTarget, prefix: str) -> list[tuple[str, str]]:
    """The refs whose full name starts with `prefix`, by name (GitHub matches strings, not paths)."""
    if not target.refs:
        raise ApiError(409, EMPTY_GIT)
    return [(r, s) for r, s in sorted(target.refs.items()) if r.startswith(prefix)]


@router.get("/repos/{owner}/{repo}/git/refs", summary="List the repository's refs (branches and tags)")
async def list_refs(
    owner: str, repo: str, request: Request, ctx: Reader, page: Annotated[Page, Depends(page_params)]
) -> JSONResponse:
    target = git_target(ctx, owner, repo)
    refs = _matching(target, "refs/")
    return _list_response(request, await _ref_bodies(target, _page(refs, page)), page, len(refs))


@router.get(
    "/repos/{owner}/{repo}/git/matching-refs/{ref:path}",
    summary="Refs whose name starts with refs/{ref} (an empty list when none does)",
)
async def matching_refs(
    owner: str,
    repo: str,
    ref: str,
    request: Request,
    ctx: Reader,
    page: Annotated[Page, Depends(page_params)],
) -> JSONResponse:
    target = git_target(ctx, owner, repo)
    refs = _matching(target, _full_ref(ref))
    return _list_response(request, await _ref_bodies(target, _page(refs, page)), page, len(refs))


@router.get(
    "/repos/{owner}/{repo}/git/refs/{ref:path}",
    summary="A ref by name (heads/main); a list of the refs it is a prefix of when none has that name",
)
async def get_refs(
    owner: str,
    repo: str,
    ref: str,
    request: Request,
    ctx: Reader,
    page: Annotated[Page, Depends(page_params)],
) -> Response:
    target = git_target(ctx, owner, repo)
    name = _full_ref(ref).rstrip("/")
    refs = _matching(target, name)
    exact = [(r, s) for r, s in refs if r == name]
    if exact:
        return JSONResponse((await _ref_bodies(target, exact))[0])
    if not refs:
        raise not_found()
    return _list_response(request, await _ref_bodies(target, _page(refs, page)), page, len(refs))


@router.get("/repos/{owner}/{repo}/git/ref/{ref:path}", summary="A ref by its exact name (heads/main)")
async def get_ref(owner: str, repo: str, ref: str, ctx: Reader) -> Json:
    target = git_target(ctx, owner, repo)
    if not target.refs:
        raise ApiError(409, EMPTY_GIT)
    name = _full_ref(ref)
    sha = target.refs.get(name)
    if sha is None:
        raise not_found()
    return (await _ref_bodies(target, [(name, sha)]))[0]


# ---------------------------------------------------------------------------- commits


def _timestamp(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationFailed.one(
            "Commit", "invalid", f"{field} must be an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SSZ)", field
        ) from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def _emails(ctx: V3, who: str) -> frozenset[str]:
    """GitHub's `author`/`committer` filter: a login (its email) or an email address."""
    user = ctx.state.user_by_login(who)
    return frozenset({who.lower()} | ({user.email.lower()} if user is not None else set()))


def _commit_links(request: Request, page: Page, more: bool) -> str | None:
    """`next`/`first`/`prev` (no `last`: counting a whole history to find it costs too much)."""

    def url(n: int) -> str:
        return str(request.url.include_query_params(page=n, per_page=page.per_page))

    links = [f'<{url(page.page + 1)}>; rel="next"'] if more else []
    if page.page > 1:
        links += [f'<{url(1)}>; rel="first"', f'<{url(page.page - 1)}>; rel="prev"']
    return ", ".join(links) or None


@router.get("/repos/{owner}/{repo}/commits", summary="Commits, newest first, from a branch, tag or sha")
async def list_commits(
    owner: str,
    repo: str,
    request: Request,
    ctx: Reader,
    page: Annotated[Page, Depends(page_params)],
    sha: str | None = None,
    path: str | None = None,
    author: str | None = None,
    committer: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> JSONResponse:
    target = git_target(ctx, owner, repo)
    after, before = _timestamp(since, "since"), _timestamp(until, "until")
    authors = _emails(ctx, author) if author else None
    committers = _emails(ctx, committer) if committer else None
    if not target.refs:
        raise ApiError(409, EMPTY_GIT)
    start = sha or target.default_branch

    def keep(info: CommitInfo) -> bool:
        return (
            (authors is None or info.author.email.lower() in authors)
            and (committers is None or info.committer.email.lower() in committers)
            and (after is None or info.committer.time >= after)
            and (before is None or info.committer.time <= before)
        )

    filtered = any(x is not None for x in (authors, committers, after, before))

    def work(repo_: Repo) -> tuple[list[CommitInfo], bool]:
        first = _commit_or(repo_, target, start, ApiError(404, f"No commit found for SHA: {start}"))
        if path is not None and browse.split_path(path) is None:
            return [], False
        return browse.log(
            repo_,
            first.sha,
            path=path,
            keep=keep if filtered else None,
            skip=page.offset,
            limit=page.per_page,
        )

    commits, more = await read_git(target, work)
    link = _commit_links(request, page, more)
    body = [git_shapes.commit(target.links, c) for c in commits]
    return JSONResponse(body, headers={"Link": link} if link else None)


@router.get(
    "/repos/{owner}/{repo}/commits/{ref:path}",
    summary="A commit with its parents, stats and changed files (against its first parent)",
)
async def get_commit(owner: str, repo: str, ref: str, request: Request, ctx: Reader) -> Response:
    target = git_target(ctx, owner, repo)
    if not target.refs:
        raise ApiError(409, EMPTY_GIT)
    just_sha = media(request) == "sha"

    def work(repo_: Repo) -> tuple[CommitInfo, browse.Diff | None]:
        info = _commit_or(repo_, target, ref, ApiError(422, f"No commit found for SHA: {ref}"))
        return info, None if just_sha else browse.commit_diff(repo_, info)

    if just_sha:
        info, diff = await read_git(target, work)
    else:
        async with read_limits(request)[1].slot():  # a diff reads up to a few MB of blobs
            info, diff = await read_git(target, work)
    if just_sha:
        return PlainTextResponse(info.sha)
    return JSONResponse(git_shapes.commit(target.links, info, diff))


# ---------------------------------------------------------------------------- contents


@dataclass(frozen=True)
class _Found:
    """What a path names at a commit (a link to a regular file is that file, as GitHub)."""

    commit: str
    entry: Entry
    kind: Kind
    size: int = 0
    data: bytes | None = None  # a file's bytes; None when over the inline limit (read them raw)
    listed: tuple[Listed, ...] = ()
    target: str = ""  # a symbolic link's target
    submodule_url: str | None = None


def _describe(repo: Repo, info: CommitInfo, entry: Entry, limit: int) -> _Found:
    if entry.kind == "symlink":
        entry = browse.follow_symlink(repo, info.tree, entry) or entry
    kind = entry.kind
    if kind == "file":
        read = browse.read_blob_upto(repo, entry.sha, limit)
        if read is None:
            raise browse.MissingObject(entry.sha)
        return _Found(info.sha, entry, kind, read[0], read[1])
    if kind == "dir":
        listed, _ = browse.list_dir(repo, entry)
        return _Found(info.sha, entry, kind, listed=tuple(listed))
    if kind == "symlink":
        target = browse.symlink_target(repo, entry)
        return _Found(info.sha, entry, kind, size=len(target.encode()), target=target)
    return _Found(info.sha, entry, kind, submodule_url=browse.submodule_url(repo, info.tree, entry.path))


def _resolve_ref(target: GitTarget, ref: str | None) -> str:
    if not target.refs:
        raise ApiError(404, EMPTY_CONTENTS)
    return ref or target.default_branch


async def _content(target: GitTarget, ref: str, path: str) -> _Found:
    def work(repo: Repo) -> _Found:
        info = _commit_or(repo, target, ref, ApiError(404, f"No commit found for the ref {ref}"))
        entry = browse.lookup(repo, info.tree, path)
        if entry is None:
            raise not_found()
        return _describe(repo, info, entry, MAX_INLINE_BYTES)

    return await read_git(target, work)


async def _raw(request: Request, target: GitTarget, found: _Found) -> Response | None:
    """The raw bytes of a file or a link (None for directories and submodules).

    Files over the inline limit are streamed by `git cat-file` (an expensive read).
    """
    headers = {"ETag": f'"{found.entry.sha}"', "X-Content-Type-Options": "nosniff"}
    if found.kind == "file":
        if found.size > MAX_RAW_BYTES:
            raise ApiError(
                403,
                f"This file is {found.size} bytes; the API serves files up to {MAX_RAW_BYTES} bytes. "
                "Clone the repository to get it.",
            )
        if found.data is None:
            path = str(target.store.repo_path(target.repo_id))
            return await stream_git(
                request,
                lambda git: blob_command(git, path, found.entry.sha),
                media_type="application/octet-stream",
                headers={**headers, "Content-Length": str(found.size)},
                unavailable="files over 1 MB are served raw only by nodes with git installed; "
                "try another node, or clone the repository",
            )
        body = found.data
    elif found.kind == "symlink":
        body = found.target.encode()
    else:
        return None
    return Response(body, media_type="application/octet-stream", headers=headers)


def _content_json(target: GitTarget, ref: str, found: _Found, as_object: bool) -> Json | list[Json]:
    links, sha, entry = target.links, found.commit, found.entry
    if found.kind == "file":
        return git_shapes.content_file(links, entry, ref, sha, found.size, found.data)
    if found.kind == "symlink":
        return git_shapes.content_symlink(links, entry, ref, sha, found.size, found.target)
    if found.kind == "submodule":
        return git_shapes.content_submodule(links, entry, ref, sha, found.submodule_url)
    items = [git_shapes.content_entry(links, item, ref, sha) for item in found.listed]
    return git_shapes.content_dir(links, entry, ref, sha, items) if as_object else items


async def _contents_response(
    request: Request, target: GitTarget, ref: str | None, path: str
) -> Response | Json | list[Json]:
    wanted = media(request)
    name = _resolve_ref(target, ref)
    found = await _content(target, name, path)
    if wanted == "raw":
        raw = await _raw(request, target, found)
        if raw is not None:
            return raw
    return _content_json(target, name, found, wanted == "object")


@router.get(
    "/repos/{owner}/{repo}/contents",
    summary="The root directory of the repository at a ref",
    response_model=None,
)
async def get_root_contents(
    owner: str, repo: str, request: Request, ctx: Reader, ref: str | None = None
) -> Response | Json | list[Json]:
    return await _contents_response(request, git_target(ctx, owner, repo), ref, "")


@router.get(
    "/repos/{owner}/{repo}/contents/{path:path}",
    summary="A file (base64), directory (list), symbolic link or submodule at a ref",
    response_model=None,
)
async def get_contents(
    owner: str, repo: str, path: str, request: Request, ctx: Reader, ref: str | None = None
) -> Response | Json | list[Json]:
    return await _contents_response(request, git_target(ctx, owner, repo), ref, path)


@router.get(
    "/repos/{owner}/{repo}/raw/{ref}/{path:path}",
    summary="A file's raw bytes (Stele's download_url; ref is a commit sha, branch or tag)",
)
async def get_raw(owner: str, repo: str, ref: str, path: str, request: Request, ctx: Reader) -> Response:
    target = git_target(ctx, owner, repo)
    found = await _content(target, _resolve_ref(target, ref), path)
    raw = await _raw(request, target, found)
    if raw is None:
        raise not_found()
    return raw


async def _readme(
    request: Request, target: GitTarget, ref: str | None, dirs: tuple[str, ...]
) -> Response | Json:
    name = _resolve_ref(target, ref)
    raw = media(request) == "raw"

    def work(repo: Repo) -> _Found:
        info = _commit_or(repo, target, name, ApiError(404, f"No commit found for the ref {name}"))
        entry = browse.find_readme(repo, info.tree, dirs)
        if entry is None:
            raise not_found()
        return _describe(repo, info, entry, MAX_INLINE_BYTES)

    found = await read_git(target, work)
    if raw:
        response = await _raw(request, target, found)
        if response is not None:
            return response
    body = _content_json(target, name, found, False)
    assert isinstance(body, dict)
    return body


@router.get(
    "/repos/{owner}/{repo}/readme",
    summary="The preferred README (.github/, the root, docs/)",
    response_model=None,
)
async def get_readme(
    owner: str, repo: str, request: Request, ctx: Reader, ref: str | None = None
) -> Response | Json:
    return await _readme(request, git_target(ctx, owner, repo), ref, README_DIRS)


@router.get(
    "/repos/{owner}/{repo}/readme/{directory:path}", summary="The README of a directory", response_model=None
)
async def get_dir_readme(
    owner: str, repo: str, directory: str, request: Request, ctx: Reader, ref: str | None = None
) -> Response | Json:
    return await _readme(request, git_target(ctx, owner, repo), ref, (directory.strip("/"),))


# ---------------------------------------------------------------------------- archives


async def _archive(request: Request, target: GitTarget, ref: str | None, fmt: ArchiveFormat) -> Response:
    if not target.refs:
        raise not_found()
    name = ref or target.default_branch

    def work(repo: Repo) -> str:
        return _commit_or(repo, target, name, not_found()).sha

    sha = await read_git(target, work)
    prefix = f"{target.owner}-{target.name}-{sha[:7]}"
    path = str(target.store.repo_path(target.repo_id))
    return await stream_git(
        request,
        lambda git: archive_command(git, path, sha, prefix, fmt),
        media_type=ARCHIVE_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f"attachment; filename={prefix}.{fmt}", "ETag": f'"{sha}"'},
        unavailable="archives are served only by nodes with git installed; try another node",
    )


@router.get("/repos/{owner}/{repo}/tarball", summary="A gzipped tar of the default branch")
async def get_default_tarball(owner: str, repo: str, request: Request, ctx: Reader) -> Response:
    return await _archive(request, git_target(ctx, owner, repo), None, "tar.gz")


@router.get(
    "/repos/{owner}/{repo}/tarball/{ref:path}",
    summary="A gzipped tar of a branch, tag or commit (served here, not redirected)",
)
async def get_tarball(owner: str, repo: str, ref: str, request: Request, ctx: Reader) -> Response:
    return await _archive(request, git_target(ctx, owner, repo), ref or None, "tar.gz")


@router.get("/repos/{owner}/{repo}/zipball", summary="A zip archive of the default branch")
async def get_default_zipball(owner: str, repo: str, request: Request, ctx: Reader) -> Response:
    return await _archive(request, git_target(ctx, owner, repo), None, "zip")


@router.get(
    "/repos/{owner}/{repo}/zipball/{ref:path}",
    summary="A zip archive of a branch, tag or commit (served here, not redirected)",
)
async def get_zipball(owner: str, repo: str, ref: str, request: Request, ctx: Reader) -> Response:
    return await _archive(request, git_target(ctx, owner, repo), ref or None, "zip")
