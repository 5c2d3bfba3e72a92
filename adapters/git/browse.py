"""Reading a repository's objects for the REST API: names to commits, history, paths, READMEs, diffs.

Plain functions over a dulwich `Repo` (the node's bare repository, from `GitStore.open`).
They only read objects. Which refs exist is the ledger's business, so callers pass the
finalized refs in (`resolve`) instead of trusting the bare repository's own refs, which
may be written a moment later than the state a request is answered from; objects are
never deleted, so an object named by a finalized ref can always be read.

Every walk is bounded (commits visited, directory entries, diff sizes), so that one
request cannot make the node read a whole large repository. Blob sizes and object types
come from pack headers (`sizes.stored_object_info`), so a blob is only ever read whole
when it is known to be small enough: listing a directory, diffing a commit or naming
a blob where a commit is expected never inflates a large one. Archives and large raw
files are streamed by C git instead (`adapters.git.archive`). Paths are `/`-separated
`str`s; names that are not UTF-8 are shown with U+FFFD and cannot be asked for by path.
"""

from __future__ import annotations

import heapq
import posixpath
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Literal

from dulwich.config import ConfigFile, parse_submodules
from dulwich.diff_tree import CHANGE_ADD, CHANGE_DELETE, tree_changes
from dulwich.objects import (
    S_ISGITLINK,
    Blob,
    Commit,
    ObjectID,
    ShaFile,
    Tag,
    Tree,
    TreeEntry,
    object_class,
)
from dulwich.patch import is_binary, unified_diff
from dulwich.repo import Repo

from adapters.git.sizes import stored_object_info

#: Commits a history walk may visit for one request (skipped pages and filtered-out commits count).
MAX_LOG_VISIT = 50_000
#: Entries returned for one directory (GitHub's limit for the contents API).
MAX_DIR_ENTRIES = 1000
#: Files listed in one commit's diff (GitHub's limit per page).
MAX_DIFF_FILES = 300
#: A side of a file diff larger than this gets no patch and no line counts.
MAX_DIFF_BLOB_BYTES = 512 * 1024
#: Blob bytes read for the patches of one commit in all; files after that get no patch.
MAX_DIFF_TOTAL_BYTES = 4 * 1024 * 1024
#: Symbolic links followed in a row when a path names one.
MAX_SYMLINK_HOPS = 8
#: `.gitmodules` files larger than this are not parsed.
MAX_GITMODULES_BYTES = 1024 * 1024
#: A symbolic link whose target is longer than this (Linux's PATH_MAX) leads nowhere.
MAX_SYMLINK_BYTES = 4096

_HEX40 = re.compile(r"^[0-9a-fA-F]{40}$")
_SHORT_HEX = re.compile(r"^[0-9a-fA-F]{4,39}$")
_IDENTITY = re.compile(rb"^(.*?)\s*<([^<>]*)>\s*$")
_README = re.compile(r"^readme(\..+)?$", re.IGNORECASE)
_README_MARKUP = frozenset(
    {"md", "markdown", "mdown", "mkdn", "mkd", "rst", "txt", "text", "org", "adoc", "asciidoc", "textile"}
)
_STATUS: dict[str, Literal["added", "removed", "modified"]] = {CHANGE_ADD: "added", CHANGE_DELETE: "removed"}
_MAX_TAG_CHAIN = 16

Kind = Literal["file", "dir", "symlink", "submodule"]


class BrowseError(Exception):
    """A read that cannot be answered from the repository's objects."""


class MissingObject(BrowseError):
    """An object that a finalized ref (or the history it names) needs is not on this node."""

    def __init__(self, sha: str) -> None:
        super().__init__(f"git object {sha} is missing from this node's repository")
        self.sha = sha


class HistoryTooLong(BrowseError):
    """The walk would have to visit more than `MAX_LOG_VISIT` commits."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the history walk would visit more than {limit} commits")
        self.limit = limit


# ---------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    email: str
    time: int  # seconds since the epoch
    offset: int  # seconds east of UTC


@dataclass(frozen=True, slots=True)
class CommitInfo:
    sha: str
    tree: str
    parents: tuple[str, ...]
    author: Person
    committer: Person
    message: str
    signature: str | None  # the gpgsig header, if the commit is signed


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a tree, at `path` from the root ("" for the root tree itself)."""

    path: str
    mode: int
    sha: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def kind(self) -> Kind:
        return kind_of(self.mode)


@dataclass(frozen=True, slots=True)
class Listed:
    """A directory entry with its size (blob bytes; 0 for directories and submodules)."""

    entry: Entry
    size: int


@dataclass(frozen=True, slots=True)
class FileChange:
    path: str
    status: Literal["added", "removed", "modified"]
    sha: str  # the blob after the change (before it, for a removal)
    additions: int
    deletions: int
    patch: str | None  # unified diff hunks without the ---/+++ lines; None: binary or too large


@dataclass(frozen=True, slots=True)
class Diff:
    files: tuple[FileChange, ...]
    truncated: bool  # more files changed than were listed


def kind_of(mode: int) -> Kind:
    if S_ISGITLINK(mode):
        return "submodule"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file"


def _oid(sha: str) -> ObjectID:
    return ObjectID(sha.lower().encode("ascii"))


def _text(raw: bytes, encoding: str = "utf-8") -> str:
    try:
        return raw.decode(encoding, "replace")
    except LookupError:  # an unknown encoding header
        return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------------------- objects


def _load(repo: Repo, oid: ObjectID) -> ShaFile | None:
    try:
        return repo.object_store[oid]
    except KeyError:
        return None


def get_object(repo: Repo, sha: str) -> ShaFile | None:
    """The object, or None when `sha` is not a full object id or not in the repository."""
    return _load(repo, _oid(sha)) if _HEX40.match(sha) else None


def object_info(repo: Repo, sha: str) -> tuple[str, int] | None:
    """(`commit`/`tree`/`blob`/`tag`, size in bytes) from the object's headers; None when missing."""
    if not _HEX40.match(sha):
        return None
    found = stored_object_info(repo, sha.lower())
    if found is None:
        return None
    cls = object_class(found[0])
    return (cls.type_name.decode(), found[1]) if cls is not None else None


def object_type(repo: Repo, sha: str) -> str | None:
    """`commit`, `tree`, `blob` or `tag`, or None when missing."""
    info = object_info(repo, sha)
    return info[0] if info is not None else None


def peel_commit(repo: Repo, sha: str) -> Commit | None:
    """The commit `sha` names, through any chain of annotated tags; None for anything else.

    Blobs and trees are told by their headers and never read.
    """
    for _ in range(_MAX_TAG_CHAIN):
        kind = object_type(repo, sha)
        if kind not in ("tag", "commit"):
            return None
        obj = get_object(repo, sha)
        if not isinstance(obj, Tag):
            return obj if isinstance(obj, Commit) else None
        sha = obj.object[1].decode()
    return None


def resolve(repo: Repo, refs: Mapping[str, str], spec: str) -> str | None:
    """The commit a branch, tag, full ref (`refs/...`, `heads/...`) or object id names, or None.

    Git's order: a full 40-hex id is an object id; then the exact ref, a branch, a tag;
    then an abbreviated id (4 to 39 hex digits) that names exactly one commit.
    Raises `MissingObject` when a finalized ref names an object this node does not have.
    """
    if not spec:
        return None
    if _HEX40.match(spec):
        found = peel_commit(repo, spec)
        return found.id.decode() if found is not None else None
    for name in (spec, f"refs/heads/{spec}", f"refs/tags/{spec}", f"refs/{spec}"):
        target = refs.get(name) if name.startswith("refs/") else None
        if target is not None:
            found = peel_commit(repo, target)
            if found is None:
                if object_type(repo, target) is None:
                    raise MissingObject(target)
                return None  # a tag of a tree or a blob
            return found.id.decode()
    if _SHORT_HEX.match(spec):
        commits: set[str] = set()
        for oid in repo.object_store.iter_prefix(spec.lower().encode("ascii")):
            found = peel_commit(repo, oid.decode())
            if found is not None:
                commits.add(found.id.decode())
            if len(commits) > 1:
                return None  # ambiguous
        return commits.pop() if commits else None
    return None


def _person(raw: bytes, when: int, offset: int, encoding: str) -> Person:
    match = _IDENTITY.match(raw)
    name, email = (match.group(1), match.group(2)) if match else (raw, b"")
    return Person(_text(name, encoding), _text(email, encoding), when, offset)


def commit_info(commit: Commit) -> CommitInfo:
    encoding = commit.encoding.decode("ascii", "replace") if commit.encoding else "utf-8"
    signature = commit.gpgsig
    return CommitInfo(
        sha=commit.id.decode(),
        tree=commit.tree.decode(),
        parents=tuple(p.decode() for p in commit.parents),
        author=_person(commit.author, commit.author_time, commit.author_timezone, encoding),
        committer=_person(commit.committer, commit.commit_time, commit.commit_timezone, encoding),
        message=_text(commit.message, encoding),
        signature=_text(signature) if signature else None,
    )


def get_commit(repo: Repo, sha: str) -> CommitInfo | None:
    obj = get_object(repo, sha)
    return commit_info(obj) if isinstance(obj, Commit) else None


# ---------------------------------------------------------------------------- history


def log(
    repo: Repo,
    start: str,
    *,
    path: str | None = None,
    keep: Callable[[CommitInfo], bool] | None = None,
    skip: int = 0,
    limit: int = 30,
    max_visit: int = MAX_LOG_VISIT,
) -> tuple[list[CommitInfo], bool]:
    """Up to `limit` commits from `start` back, newest commit time first, after skipping `skip`.

    Returns the commits and whether there are more. `path` keeps the commits that changed
    it, simplifying history as `git log -- <path>` does (a merge that took the path
    unchanged from one parent is followed through that parent only); `keep` filters
    further. Raises `HistoryTooLong` past `max_visit` commits and `MissingObject` when the
    start commit is missing; a missing ancestor ends its line (as in a shallow clone).
    """
    parts = split_path(path) if path else None
    if parts is not None and not parts:
        parts = None  # the root: every commit
    first = get_object(repo, start)
    if not isinstance(first, Commit):
        raise MissingObject(start)

    def entry_of(commit: Commit) -> tuple[int, ObjectID] | None:
        return _lookup_parts(repo, commit.tree, parts) if parts is not None else None

    heap: list[tuple[int, int, ObjectID, Commit]] = [(-first.commit_time, 0, first.id, first)]
    entries: dict[ObjectID, tuple[int, ObjectID] | None] = {}
    queued = {first.id}
    counter = 1
    matched = 0
    visited = 0
    out: list[CommitInfo] = []
    while heap:
        _, _, sha, commit = heapq.heappop(heap)
        visited += 1
        if visited > max_visit:
            raise HistoryTooLong(max_visit)
        parents: dict[ObjectID, Commit] = {}
        for parent_sha in commit.parents:
            parent = _load(repo, parent_sha)
            if isinstance(parent, Commit):
                parents[parent_sha] = parent
        follow = list(parents)
        show = True
        if parts is not None:
            mine = entries.pop(sha) if sha in entries else entry_of(commit)
            if not parents:
                show = mine is not None
            else:
                same = []
                for parent_sha, parent in parents.items():
                    if parent_sha not in entries:
                        entries[parent_sha] = entry_of(parent)
                    if entries[parent_sha] == mine:
                        same.append(parent_sha)
                if same:
                    show = False
                    follow = same[:1]
        if show:
            info = commit_info(commit)
            if keep is None or keep(info):
                if matched >= skip:
                    if len(out) == limit:
                        return out, True
                    out.append(info)
                matched += 1
        for parent_sha in follow:
            if parent_sha not in queued:
                queued.add(parent_sha)
                parent = parents[parent_sha]
                heapq.heappush(heap, (-parent.commit_time, counter, parent_sha, parent))
                counter += 1
    return out, False


# ---------------------------------------------------------------------------- trees and paths


def split_path(path: str) -> list[str] | None:
    """The components of a repository path (leading and trailing `/` ignored); None if invalid.

    `.`, `..` and empty components (`a//b`) are invalid: git trees never contain them.
    """
    stripped = path.strip("/")
    if not stripped:
        return []
    parts = stripped.split("/")
    if any(p in ("", ".", "..") or "\x00" in p for p in parts):
        return None
    return parts


def _lookup_parts(repo: Repo, tree_sha: ObjectID, parts: Sequence[str]) -> tuple[int, ObjectID] | None:
    mode, sha = stat.S_IFDIR, tree_sha
    for part in parts:
        if not stat.S_ISDIR(mode) or S_ISGITLINK(mode):
            return None
        tree = _load(repo, sha)
        if not isinstance(tree, Tree):
            return None
        try:
            mode, sha = tree[part.encode("utf-8", "surrogateescape")]
        except KeyError:
            return None
    return mode, sha


def lookup(repo: Repo, tree_sha: str, path: str) -> Entry | None:
    """The entry at `path` in the tree (the tree itself for ""), or None when there is none."""
    parts = split_path(path)
    if parts is None:
        return None
    found = _lookup_parts(repo, _oid(tree_sha), parts)
    if found is None:
        return None
    return Entry("/".join(parts), found[0], found[1].decode())


def read_blob_upto(repo: Repo, sha: str, limit: int) -> tuple[int, bytes | None] | None:
    """(size, bytes) of a blob, the bytes None when it is larger than `limit`; None when missing.

    The size comes from the headers: a blob over the limit is never read.
    """
    info = object_info(repo, sha)
    if info is None or info[0] != "blob":
        return None
    if info[1] > limit:
        return info[1], None
    blob = get_object(repo, sha)
    if not isinstance(blob, Blob):
        return None
    data = blob.as_raw_string()
    return len(data), data


def blob_size(repo: Repo, sha: str) -> int:
    """The blob's size in bytes (0 when it is missing)."""
    info = object_info(repo, sha)
    return info[1] if info is not None else 0


def list_dir(repo: Repo, entry: Entry, limit: int = MAX_DIR_ENTRIES) -> tuple[list[Listed], bool]:
    """The entries of a directory in git's order, with sizes; and whether more were left out."""
    tree = get_object(repo, entry.sha)
    if not isinstance(tree, Tree):
        raise MissingObject(entry.sha)
    out: list[Listed] = []
    for item in tree.iteritems():
        if len(out) == limit:
            return out, True
        name = item.path.decode("utf-8", "replace")
        child = Entry(f"{entry.path}/{name}" if entry.path else name, item.mode, item.sha.decode())
        size = blob_size(repo, child.sha) if child.kind in ("file", "symlink") else 0
        out.append(Listed(child, size))
    return out, False


def follow_symlink(repo: Repo, tree_sha: str, entry: Entry, hops: int = MAX_SYMLINK_HOPS) -> Entry | None:
    """The regular file a symbolic link leads to inside the tree, or None (GitHub's rule).

    Targets are resolved relative to the link's directory; absolute targets and targets
    that leave the repository lead nowhere.
    """
    current = entry
    for _ in range(hops):
        if current.kind == "file":
            return current
        if current.kind != "symlink":
            return None
        read = read_blob_upto(repo, current.sha, MAX_SYMLINK_BYTES)
        target = read[1] if read is not None else None
        if target is None or target.startswith(b"/"):
            return None
        relative = target.decode("utf-8", "replace")
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(current.path), relative))
        if joined == ".." or joined.startswith("../") or joined == ".":
            return None
        found = lookup(repo, tree_sha, joined)
        if found is None:
            return None
        current = found
    return current if current.kind == "file" else None


def symlink_target(repo: Repo, entry: Entry) -> str:
    read = read_blob_upto(repo, entry.sha, MAX_SYMLINK_BYTES)
    data = read[1] if read is not None else None
    return data.decode("utf-8", "replace") if data is not None else ""


def submodule_url(repo: Repo, tree_sha: str, path: str) -> str | None:
    """The URL `.gitmodules` (at the root of the tree) gives for the submodule at `path`."""
    found = lookup(repo, tree_sha, ".gitmodules")
    if found is None or found.kind != "file":
        return None
    read = read_blob_upto(repo, found.sha, MAX_GITMODULES_BYTES)
    data = read[1] if read is not None else None
    if data is None:
        return None
    try:
        config = ConfigFile.from_file(BytesIO(data))
        for sub_path, url, _ in parse_submodules(config):
            if sub_path.decode("utf-8", "replace").strip("/") == path:
                return url.decode("utf-8", "replace")
    except (ValueError, KeyError):  # a malformed .gitmodules
        return None
    return None


def find_readme(repo: Repo, tree_sha: str, dirs: Sequence[str]) -> Entry | None:
    """The README in the first of `dirs` that has one (a file, or a link to one).

    In one directory a README with a markup extension (`.md`, `.rst`, `.txt`, ...) wins
    over one without, then the shorter, then the alphabetically first name.
    """
    for directory in dirs:
        where = lookup(repo, tree_sha, directory)
        if where is None or where.kind != "dir":
            continue
        tree = get_object(repo, where.sha)
        if not isinstance(tree, Tree):
            continue
        candidates: list[tuple[int, int, str, Entry]] = []
        for item in tree.iteritems():
            name = item.path.decode("utf-8", "replace")
            match = _README.match(name)
            if match is None or kind_of(item.mode) not in ("file", "symlink"):
                continue
            ext = (match.group(1) or "").lstrip(".").lower()
            entry = Entry(f"{where.path}/{name}" if where.path else name, item.mode, item.sha.decode())
            candidates.append((0 if ext in _README_MARKUP else 1, len(name), name, entry))
        for *_, entry in sorted(candidates, key=lambda c: c[:3]):
            target = follow_symlink(repo, tree_sha, entry)
            if target is not None:
                return target
    return None


# ---------------------------------------------------------------------------- diffs


def commit_diff(
    repo: Repo,
    commit: CommitInfo,
    *,
    max_files: int = MAX_DIFF_FILES,
    max_blob_bytes: int = MAX_DIFF_BLOB_BYTES,
    max_total_bytes: int = MAX_DIFF_TOTAL_BYTES,
) -> Diff:
    """The files a commit changed against its first parent (everything, for a root commit).

    Renames show as a removal and an addition. Binary files, submodules, sides larger
    than `max_blob_bytes` and files past `max_total_bytes` of patch input get no patch
    and zero line counts.
    """
    base: ObjectID | None = None
    if commit.parents:
        parent = get_object(repo, commit.parents[0])
        if isinstance(parent, Commit):
            base = parent.tree
    budget = max_total_bytes
    files: list[FileChange] = []
    changes = tree_changes(repo.object_store, base, _oid(commit.tree), change_type_same=True)
    for change in changes:
        if len(files) == max_files:
            return Diff(tuple(files), True)
        old, new = change.old, change.new
        shown = new if new is not None and change.type != CHANGE_DELETE else old
        assert shown is not None and shown.path is not None and shown.sha is not None
        status = _STATUS.get(change.type, "modified")
        patch: str | None = None
        additions = deletions = 0
        side_limit = min(max_blob_bytes, budget)
        before = _diff_side(repo, old, side_limit) if old is not None and status != "added" else b""
        after = _diff_side(repo, new, side_limit) if new is not None and status != "removed" else b""
        if before is not None and after is not None and len(before) + len(after) <= budget:
            budget -= len(before) + len(after)
            patch, additions, deletions = _patch(before, after)
        files.append(
            FileChange(
                path=shown.path.decode("utf-8", "replace"),
                status=status,
                sha=shown.sha.decode(),
                additions=additions,
                deletions=deletions,
                patch=patch,
            )
        )
    return Diff(tuple(files), False)


def _diff_side(repo: Repo, entry: TreeEntry, limit: int) -> bytes | None:
    """A file's bytes for a patch; None for a submodule, or a missing, binary or too large blob."""
    if entry.mode is None or entry.sha is None or S_ISGITLINK(entry.mode) or limit <= 0:
        return None
    found = read_blob_upto(repo, entry.sha.decode(), limit)
    if found is None or found[1] is None or is_binary(found[1]):
        return None
    return found[1]


def _patch(before: bytes, after: bytes) -> tuple[str | None, int, int]:
    """GitHub's `patch` (the hunks, without the ---/+++ lines) and the lines added and removed."""
    lines = list(unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True)))[2:]
    if not lines:
        return None, 0, 0  # only the mode changed
    additions = sum(1 for line in lines if line.startswith(b"+"))
    deletions = sum(1 for line in lines if line.startswith(b"-"))
    return b"".join(lines).decode("utf-8", "replace").removesuffix("\n"), additions, deletions
