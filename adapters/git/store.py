"""`GitStore`: the node's bare repositories and its content-addressed pack quarantine.

Layout under `root` (the node's `<data-dir>/git`):

- `repos/<repo_id>.git`: one bare repository per Stele repository id (ids survive
  renames), created on demand with dulwich and readable by standard git. Its refs are
  only ever written from the ledger's finalized state (`set_refs`, `set_head`).
- `packs/sha256/<digest>.pack` + `.idx`: quarantined, self-contained packs named by the
  SHA-256 of the pack file, as received from a client (`packs.receive_pack`) or fetched
  from a peer (`packs.accept_peer_pack`). Their objects are not visible in any repository
  until `import_pack` copies the pack in, which the ledger does when it applies the push.
  The `.idx` is renamed into place last: a pack without its index does not exist yet.
- `tmp/`: work files (same file system, so every publish is an atomic rename).

`has_commit`, `has_object` and `is_ancestor` answer about the repository's objects as
they are on disk now plus, when a digest is given, that quarantined pack: the early
checks of a push before it is submitted. The ledger's handlers use
`adapters.git.pack_view.PackView` instead, which answers from an explicit list of packs
(what determinism needs); both walk objects with `ObjectWalk`.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from io import BytesIO
from pathlib import Path
from typing import Protocol

from dulwich.object_format import SHA1
from dulwich.objects import S_ISGITLINK, Commit, ObjectID, ShaFile, Tag, Tree
from dulwich.pack import Pack
from dulwich.refs import Ref, check_ref_format, write_packed_refs
from dulwich.repo import Repo

from adapters.git.protocol import RefUpdate, valid_ref_name, valid_sha
from consensus.files import atomic_write, fsync_dir

__all__ = [
    "DEFAULT_MAX_OBJECT_BYTES",
    "DEFAULT_MAX_PACK_BYTES",
    "GitStore",
    "MissingPacks",
    "ObjectSource",
    "ObjectWalk",
    "RefUpdate",
]

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_MAX_PACK_BYTES = 512 * 1024 * 1024
#: The largest object (inflated; a delta's result counts) a pack may hold: GitHub's file limit.
DEFAULT_MAX_OBJECT_BYTES = 100 * 1024 * 1024
_MAX_KNOWN = 2_000_000  # complete commits remembered, in all


class GitStore:
    def __init__(
        self,
        root: Path,
        *,
        max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES,
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    ) -> None:
        self.root = Path(root)
        self.max_pack_bytes = max_pack_bytes
        #: Packs holding a larger object are refused before it is inflated (`packs`).
        self.max_object_bytes = max_object_bytes
        self.repos_dir = self.root / "repos"
        self.packs_dir = self.root / "packs" / "sha256"
        self.tmp_dir = self.root / "tmp"
        for d in (self.repos_dir, self.packs_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        # (repo id, pack digest or "") -> commits found complete in the repository's objects
        # (plus that pack's)
        self._complete: dict[tuple[str, str], set[str]] = {}
        self._lock = threading.Lock()
        self._repo_locks: dict[str, threading.Lock] = {}

    # ------------------------------------------------------------------ repositories

    def repo_path(self, repo_id: str) -> Path:
        if not _REPO_ID.match(repo_id) or ".." in repo_id:
            raise ValueError(f"not a repository id: {repo_id!r}")
        return self.repos_dir / f"{repo_id}.git"

    def exists(self, repo_id: str) -> bool:
        return (self.repo_path(repo_id) / "HEAD").is_file()

    def ensure_repo(self, repo_id: str, default_branch: str | None = None) -> Path:
        """The repository's path, creating an empty bare repository first if there is none.

        Creation is atomic (initialised in `tmp/`, then renamed), so concurrent callers and
        a crash halfway never leave a half-made repository behind.
        """
        path = self.repo_path(repo_id)
        if (path / "HEAD").is_file():
            return path
        work = Path(tempfile.mkdtemp(prefix="init-", dir=self.tmp_dir))
        try:
            Repo.init_bare(str(work), default_branch=_branch_bytes(default_branch or "main")).close()
            with contextlib.suppress(FileExistsError, OSError):
                os.rename(work, path)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        if not (path / "HEAD").is_file():
            raise OSError(f"could not create the git repository at {path}")
        return path

    @contextlib.contextmanager
    def open(self, repo_id: str) -> Iterator[Repo]:
        """The dulwich repository (created on demand), closed (packs unmapped) on exit."""
        repo = Repo(str(self.ensure_repo(repo_id)))
        try:
            yield repo
        finally:
            repo.close()

    def set_head(self, repo_id: str, branch: str) -> None:
        """Point HEAD at `refs/heads/<branch>` (the repository's default branch)."""
        target = f"refs/heads/{branch}"
        if not valid_ref_name(target):
            raise ValueError(f"not a branch name: {branch!r}")
        with self.open(repo_id) as repo:
            if repo.refs.get_symrefs().get(Ref(b"HEAD")) != target.encode():
                repo.refs.set_symbolic_ref(Ref(b"HEAD"), Ref(target.encode()))

    def head(self, repo_id: str) -> str | None:
        """The ref HEAD points at, e.g. `refs/heads/main`."""
        with self.open(repo_id) as repo:
            target = repo.refs.get_symrefs().get(Ref(b"HEAD"))
        return target.decode() if target is not None else None

    def write_refs(self, repo_id: str, refs: Mapping[str, str]) -> None:
        """Make the repository's refs exactly `refs` (the ledger's state: ref -> 40-hex id).

        Every ref goes into `packed-refs`, replaced atomically, and loose ref files are
        removed. The ledger, not this filesystem, decides which names exist: a ref beside
        another below it (`a` and `a/b`), or a component too long for a file name, is
        stored like any other (protocol version 1 accepted such names; see `domain.refs`).
        Raises ValueError for a name or id that `packed-refs` cannot hold, before writing.
        """
        data = _packed_refs(refs)
        with self._repo_lock(repo_id):
            path = self.ensure_repo(repo_id)
            _publish_packed_refs(path, data)

    def refs_match(self, repo_id: str, refs: Mapping[str, str], head_branch: str) -> bool:
        """Whether the repository on disk has exactly these refs and HEAD (after a crash or repair)."""
        if not self.exists(repo_id):
            return not refs
        try:
            return self.refs(repo_id) == dict(refs) and self.head(repo_id) == f"refs/heads/{head_branch}"
        except (OSError, ValueError, KeyError):
            return False

    def rebuild(self, repo_id: str, packs: Sequence[str], refs: Mapping[str, str], head_branch: str) -> None:
        """Build the repository afresh from the ledger's view of it, then swap it in.

        `packs` are the quarantined packs of every accepted push (all of its objects),
        `refs` and `head_branch` its finalized refs and default branch. Raises
        `MissingPacks` if some pack is not on this node (fetch it, then try again).
        """
        missing = [d for d in packs if not self.has_pack(d)]
        if missing:
            raise MissingPacks(missing)
        data = _packed_refs(refs)
        work = Path(tempfile.mkdtemp(prefix="rebuild-", dir=self.tmp_dir))
        trash: Path | None = None
        try:
            Repo.init_bare(str(work), default_branch=_branch_bytes(head_branch)).close()
            for digest in packs:
                self._link_pack(digest, work / "objects" / "pack")
            _publish_packed_refs(work, data)
            with self._repo_lock(repo_id):
                path = self.repo_path(repo_id)
                if path.exists():
                    trash = Path(tempfile.mkdtemp(prefix="trash-", dir=self.tmp_dir)) / "repo"
                    os.rename(path, trash)
                os.rename(work, path)
                fsync_dir(self.repos_dir)
        finally:
            for leftover in (work, trash.parent if trash is not None else None):
                if leftover is not None and leftover.exists():
                    shutil.rmtree(leftover, ignore_errors=True)

    def _repo_lock(self, repo_id: str) -> threading.Lock:
        with self._lock:
            lock = self._repo_locks.get(repo_id)
            if lock is None:
                lock = self._repo_locks[repo_id] = threading.Lock()
            return lock

    def refs(self, repo_id: str) -> dict[str, str]:
        """Every ref of the repository except HEAD, name -> 40-hex id."""
        with self.open(repo_id) as repo:
            raw = repo.refs.as_dict()
        return {k.decode(): v.decode() for k, v in sorted(raw.items()) if k != b"HEAD"}

    # ------------------------------------------------------------------ objects (GitView)

    def has_object(self, repo_id: str, pack_digest: str, sha: str) -> bool:
        """Whether `sha` is present with everything it reaches (a tag's target, a commit's history).

        Blobs and trees count when present (a tree's entries are checked too).
        """
        with self._objects(repo_id, pack_digest) as objects:
            return objects.connected(sha)

    def object_type(self, repo_id: str, pack_digest: str, sha: str) -> str | None:
        """`commit`, `tree`, `blob` or `tag`, or None when the object is in neither place."""
        with self._objects(repo_id, pack_digest) as objects:
            obj = objects.get(sha)
        return obj.type_name.decode() if obj is not None else None

    def has_commit(self, repo_id: str, pack_digest: str, sha: str) -> bool:
        """Whether `sha` is a commit whose whole history (commits, trees, blobs) is present.

        This is git's connectivity check, from the repository's objects plus the
        quarantined pack `pack_digest` ("" for none). The walk stops at the repository's
        current ref tips and at commits found complete before: refs are only ever set
        to complete commits, and objects are never removed, so this is exact.
        """
        with self._objects(repo_id, pack_digest) as objects:
            obj = objects.get(sha)
            return isinstance(obj, Commit) and objects.connected(sha)

    def is_ancestor(self, repo_id: str, pack_digest: str, ancestor: str, descendant: str) -> bool:
        """Whether commit `ancestor` is `descendant` or reachable from it through parents.

        See `ObjectWalk.is_ancestor`.
        """
        with self._objects(repo_id, pack_digest) as objects:
            return objects.is_ancestor(ancestor, descendant)

    @contextlib.contextmanager
    def _objects(self, repo_id: str, pack_digest: str) -> Iterator[ObjectWalk]:
        pack: Pack | None = None
        if pack_digest and self.has_pack(pack_digest):
            pack = Pack(str(self.pack_base(pack_digest)), object_format=SHA1)
        try:
            with self.open(repo_id) as repo:
                tips = {v.decode() for k, v in repo.refs.as_dict().items() if k != b"HEAD"}
                # Completeness only ever turns true (objects are never removed), so what a
                # walk found complete, from the repository alone or with this pack, stays so.
                key = (repo_id, pack_digest if pack is not None else "")
                with self._lock:
                    stop = tips | self._complete.get((repo_id, ""), set()) | self._complete.get(key, set())
                sources: list[ObjectSource] = (
                    [repo.object_store] if pack is None else [pack, repo.object_store]
                )
                objects = ObjectWalk(sources, stop=stop)
                yield objects
                if objects.complete_commits:
                    with self._lock:
                        if sum(len(v) for v in self._complete.values()) > _MAX_KNOWN:
                            self._complete.clear()
                        self._complete.setdefault(key, set()).update(objects.complete_commits)
        finally:
            if pack is not None:
                pack.close()

    # ------------------------------------------------------------------ quarantine

    def pack_base(self, digest: str) -> Path:
        """`packs/sha256/<digest>` (add `.pack` or `.idx`)."""
        if not _DIGEST.match(digest):
            raise ValueError(f"not a SHA-256 pack digest: {digest!r}")
        return self.packs_dir / digest

    def has_pack(self, digest: str) -> bool:
        if not _DIGEST.match(digest):
            return False
        base = self.pack_base(digest)
        return base.with_suffix(".idx").is_file() and base.with_suffix(".pack").is_file()

    def verify_pack(self, digest: str) -> bool:
        """Whether the quarantined pack's bytes still hash to its digest (a sound copy)."""
        if not self.has_pack(digest):
            return False
        h = hashlib.sha256()
        try:
            with open(self.pack_base(digest).with_suffix(".pack"), "rb") as f:
                while chunk := f.read(1024 * 1024):
                    h.update(chunk)
        except OSError:
            return False
        return h.hexdigest() == digest

    def pack_bytes_for(self, digest: str) -> bytes | None:
        """The quarantined pack's bytes (to serve a peer fetching it by digest), or None."""
        if not self.has_pack(digest):
            return None
        try:
            return self.pack_base(digest).with_suffix(".pack").read_bytes()
        except FileNotFoundError:
            return None

    def import_pack(self, repo_id: str, digest: str) -> None:
        """Make a quarantined pack's objects part of the repository (when its push is applied).

        The pack and its index are hard-linked (copied across file systems) into
        `objects/pack/pack-<sha1 trailer>.{pack,idx}`, index last. Idempotent, so replaying
        a block is harmless. The quarantined copy stays for peers (see `discard_pack`).
        """
        if not self.has_pack(digest):
            raise MissingPacks([digest])
        with self._repo_lock(repo_id):
            self._link_pack(digest, self.ensure_repo(repo_id) / "objects" / "pack")

    def _link_pack(self, digest: str, pack_dir: Path) -> None:
        base = self.pack_base(digest)
        with open(base.with_suffix(".pack"), "rb") as f:
            f.seek(-20, os.SEEK_END)
            name = "pack-" + f.read(20).hex()
        pack_dir.mkdir(parents=True, exist_ok=True)
        for suffix in (".pack", ".idx"):
            target = pack_dir / (name + suffix)
            if target.exists():
                continue
            work = pack_dir / f"tmp_import_{os.getpid()}_{name}{suffix}"
            with contextlib.suppress(FileNotFoundError):
                work.unlink()
            try:
                os.link(base.with_suffix(suffix), work)
            except OSError:
                shutil.copyfile(base.with_suffix(suffix), work)
            os.replace(work, target)

    def discard_pack(self, digest: str) -> None:
        """Remove a pack from quarantine (its index first, so it disappears atomically)."""
        base = self.pack_base(digest)
        for suffix in (".idx", ".pack"):
            with contextlib.suppress(FileNotFoundError):
                base.with_suffix(suffix).unlink()

    def quarantined(self) -> list[str]:
        """The digests of every complete pack in quarantine, sorted."""
        return sorted(p.stem for p in self.packs_dir.glob("*.idx") if self.has_pack(p.stem))


class MissingPacks(FileNotFoundError):
    """Packs the ledger lists for a repository that this node does not hold (yet)."""

    def __init__(self, digests: Sequence[str]) -> None:
        super().__init__(f"packs not on this node: {', '.join('sha256:' + d[:16] for d in digests)}")
        self.digests = tuple(digests)


def _branch_bytes(branch: str) -> bytes:
    raw = branch.encode()
    return raw if check_ref_format(Ref(b"refs/heads/" + raw)) else b"main"


def _packed_refs(refs: Mapping[str, str]) -> bytes:
    """The `packed-refs` file for `refs`, sorted by name (git's byte order)."""
    out = BytesIO()
    packed: dict[Ref, ObjectID] = {}
    for name, sha in refs.items():
        raw = name.encode("utf-8")
        if not raw.startswith(b"refs/") or any(b in raw for b in (0, 10, 13, 32)):
            raise ValueError(f"a ref name packed-refs cannot hold: {name!r}")
        if not valid_sha(sha):
            raise ValueError(f"not an object id for {name!r}: {sha!r}")
        packed[Ref(raw)] = ObjectID(sha.encode())
    write_packed_refs(out, packed)
    return out.getvalue()


def _publish_packed_refs(path: Path, data: bytes) -> None:
    """Replace `packed-refs` (if it differs) and remove every loose ref file beside it."""
    target = path / "packed-refs"
    try:
        same = target.read_bytes() == data
    except FileNotFoundError:
        same = False
    if not same:
        atomic_write(target, data, 0o644)
    refs_dir = path / "refs"
    for root, dirs, files in os.walk(refs_dir, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            sub = Path(root) / name
            if sub not in (refs_dir / "heads", refs_dir / "tags"):
                with contextlib.suppress(OSError):
                    sub.rmdir()
    for keep in ("heads", "tags"):
        (refs_dir / keep).mkdir(parents=True, exist_ok=True)


def _parents(commit: Commit) -> tuple[str, ...]:
    return tuple(p.decode() for p in commit.parents)


class ObjectSource(Protocol):
    """Where objects are looked up: a dulwich `Pack` or object store."""

    def __contains__(self, oid: ObjectID) -> bool: ...

    def __getitem__(self, oid: ObjectID) -> ShaFile: ...


class ObjectWalk:
    """Object lookup in some sources (searched in order) and git's connectivity walks over them.

    `stop`: commits known to be complete (their whole history present), where walks end.
    A missing object is a False answer; any other failure (I/O) raises.
    """

    def __init__(self, sources: Sequence[ObjectSource], stop: Collection[str]) -> None:
        self._sources = tuple(sources)
        self._stop = stop
        self.complete_commits: set[str] = set()

    def get(self, sha: str) -> ShaFile | None:
        if not valid_sha(sha):
            return None
        oid = ObjectID(sha.encode())
        for source in self._sources:
            if oid in source:
                return source[oid]
        return None

    def contains(self, sha: str) -> bool:
        oid = ObjectID(sha.encode())
        return any(oid in source for source in self._sources)

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether commit `ancestor` is `descendant` or reachable from it through parents.

        An exact walk of the parents (newest commit time first, so the usual fast-forward
        answer comes quickly); a missing commit ends its path.
        """
        top = self.commit(descendant)
        if top is None or self.commit(ancestor) is None:
            return False
        if ancestor == descendant:
            return True
        seen = {descendant}
        heap: list[tuple[int, str, tuple[str, ...]]] = [(-top.commit_time, descendant, _parents(top))]
        while heap:
            _, _, parents = heapq.heappop(heap)
            for parent in parents:
                if parent == ancestor:
                    return True
                if parent in seen:
                    continue
                seen.add(parent)
                commit = self.commit(parent)
                if commit is not None:
                    heapq.heappush(heap, (-commit.commit_time, parent, _parents(commit)))
        return False

    def commit(self, sha: str) -> Commit | None:
        obj = self.get(sha)
        return obj if isinstance(obj, Commit) else None

    def connected(self, sha: str) -> bool:
        """Whether the object and everything it reaches are present."""
        for _ in range(64):  # tags of tags
            obj = self.get(sha)
            if isinstance(obj, Tag):
                sha = obj.object[1].decode()
                continue
            if isinstance(obj, Commit):
                return self._commit_connected(sha)
            if isinstance(obj, Tree):
                return self._tree_connected(sha, None, set())
            return obj is not None
        return False

    def _commit_connected(self, sha: str) -> bool:
        if sha in self._stop:
            return True
        new: dict[str, Commit] = {}
        todo = [sha]
        while todo:
            current = todo.pop()
            if current in new or current in self._stop:
                continue
            commit = self.commit(current)
            if commit is None:
                return False
            new[current] = commit
            todo.extend(_parents(commit))
        trees_done: set[str] = set()
        for commit in new.values():
            # Compare with a parent's tree: what it shares with a complete (or in this walk
            # verified) parent needs no second look.
            base = None
            for parent in _parents(commit):
                parent_commit = new.get(parent) or self.commit(parent)
                if parent_commit is not None:
                    base = parent_commit.tree.decode()
                    break
            if not self._tree_connected(commit.tree.decode(), base, trees_done):
                return False
        self.complete_commits.update(new)
        return True

    def _tree_connected(self, sha: str, base: str | None, done: set[str]) -> bool:
        todo: list[tuple[str, str | None]] = [(sha, base)]
        while todo:
            tree_sha, base_sha = todo.pop()
            if tree_sha == base_sha or tree_sha in done:
                continue
            tree = self.get(tree_sha)
            if not isinstance(tree, Tree):
                return False
            base_entries: dict[bytes, tuple[int, str]] = {}
            if base_sha is not None:
                base_tree = self.get(base_sha)
                if isinstance(base_tree, Tree):
                    base_entries = {e.path: (e.mode, e.sha.decode()) for e in base_tree.iteritems()}
            for entry in tree.iteritems():
                entry_sha = entry.sha.decode()
                if S_ISGITLINK(entry.mode):
                    continue  # a submodule's commit lives in another repository
                before = base_entries.get(entry.path)
                if before is not None and before[1] == entry_sha:
                    continue
                if stat.S_ISDIR(entry.mode):
                    sub_base = before[1] if before is not None and stat.S_ISDIR(before[0]) else None
                    todo.append((entry_sha, sub_base))
                elif not self.contains(entry_sha):
                    return False
            done.add(tree_sha)
        return True
