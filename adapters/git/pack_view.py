"""`PackView`: the ledger's `GitView` over the node's quarantined packs.

A handler asks about an explicit list of packs (a repository's accepted pushes plus the
push being decided, see `commands.git_view`). This view answers from exactly those
packs in `packs/sha256/`, never from the bare repositories (whose contents depend on
how far this node has applied), so every node, and every replay, gets the same answer.
Received packs are self-contained (thin packs are completed on receipt), so each is
readable on its own.

A listed pack this node does not hold raises `GitViewError`: the ledger then waits for
it to be fetched from a peer rather than deciding the push without it.

Open `Pack` objects are kept in a small LRU (packs are immutable), and the newest packs
are searched first, since most lookups are for recently pushed objects.

`oversized_objects` answers from the pack's index and its entry headers alone (a
delta's result size is in the first bytes of its data), so no object is inflated,
and the same pack bytes give the same answer on every node. Answers are cached per
pack (and limit).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from dulwich.object_format import SHA1
from dulwich.objects import Commit, sha_to_hex
from dulwich.pack import Pack, compute_file_sha

from adapters.git.sizes import object_size_at
from adapters.git.store import GitStore, ObjectWalk
from commands.git_view import GitViewError

DEFAULT_MAX_OPEN_PACKS = 128
#: (pack, limit) answers of `oversized_objects` remembered.
MAX_CACHED_SIZE_ANSWERS = 1024


class PackView:
    def __init__(self, store: GitStore, *, max_open: int = DEFAULT_MAX_OPEN_PACKS) -> None:
        self.store = store
        self._max_open = max_open
        self._open: OrderedDict[str, Pack] = OrderedDict()
        self._oversized: OrderedDict[tuple[str, int], tuple[tuple[str, int], ...]] = OrderedDict()
        self._lock = threading.RLock()

    def missing(self, packs: Sequence[str]) -> list[str]:
        """The listed packs this node does not hold (to fetch them from peers)."""
        return [d for d in packs if not self.store.has_pack(d)]

    def has_commit(
        self, repo_id: str, packs: Sequence[str], sha: str, complete: Collection[str] = ()
    ) -> bool:
        with self._walk(packs, complete) as objects:
            return isinstance(objects.get(sha), Commit) and objects.connected(sha)

    def has_object(
        self, repo_id: str, packs: Sequence[str], sha: str, complete: Collection[str] = ()
    ) -> bool:
        with self._walk(packs, complete) as objects:
            return objects.connected(sha)

    def is_ancestor(self, repo_id: str, packs: Sequence[str], ancestor: str, descendant: str) -> bool:
        with self._walk(packs, ()) as objects:
            return objects.is_ancestor(ancestor, descendant)

    def oversized_objects(self, digest: str, limit: int) -> list[tuple[str, int]]:
        """The objects of pack `digest` larger than `limit` bytes, as (sha, size), by sha.

        A delta counts with the size of its result. Raises GitViewError when the pack is
        not held or cannot be read (never an empty answer by mistake).
        """
        key = (digest, limit)
        with self._lock:
            known = self._oversized.get(key)
            if known is not None:
                self._oversized.move_to_end(key)
                return list(known)
            try:
                pack = self._pack(digest)
                found = _oversized(pack, str(self.store.pack_base(digest).with_suffix(".pack")), limit)
            except GitViewError:
                raise
            except Exception as exc:  # I/O, a truncated or garbled pack: no answer beats a wrong one
                raise GitViewError(f"cannot read the sizes in pack {digest}: {exc}", (digest,)) from exc
            finally:
                self._trim()
            self._oversized[key] = found
            while len(self._oversized) > MAX_CACHED_SIZE_ANSWERS:
                self._oversized.popitem(last=False)
            return list(found)

    def close(self) -> None:
        with self._lock:
            for pack in self._open.values():
                pack.close()
            self._open.clear()

    def forget(self, digest: str) -> None:
        """Close a pack this node is about to drop (its copy was bad and is fetched again)."""
        with self._lock:
            pack = self._open.pop(digest, None)
            for key in [k for k in self._oversized if k[0] == digest]:
                del self._oversized[key]
        if pack is not None:
            try:
                pack.close()
            except BufferError:
                pass  # a failed read still holds a view of its map; it is freed with that read

    @contextmanager
    def _walk(self, packs: Sequence[str], complete: Collection[str]) -> Iterator[ObjectWalk]:
        with self._lock:  # the LRU may close a pack another caller is reading
            try:
                sources = [self._pack(d) for d in reversed(packs)]
                yield ObjectWalk(sources, stop=complete)
            except GitViewError:
                raise
            except Exception as exc:  # zlib, checksums, dulwich asserts...: this node's copy
                raise GitViewError(
                    f"cannot read the repository's packs: {type(exc).__name__}: {exc}", packs
                ) from exc
            finally:
                self._trim()  # only between walks: a walk needs every pack it lists open

    def _trim(self) -> None:
        while len(self._open) > self._max_open:
            _, old = self._open.popitem(last=False)
            old.close()

    def _pack(self, digest: str) -> Pack:
        pack = self._open.get(digest)
        if pack is not None:
            self._open.move_to_end(digest)
            return pack
        if not self.store.has_pack(digest):
            raise GitViewError(f"pack {digest} is not held by this node", (digest,))
        pack = Pack(str(self.store.pack_base(digest)), object_format=SHA1)
        self._open[digest] = pack
        return pack


def _oversized(pack: Pack, path: str, limit: int) -> tuple[tuple[str, int], ...]:
    """Every entry's header, in pack order, once the pack and its index check out.

    The answer feeds the ledger, so a pack damaged on this node's disk must not give a
    different one: both checksums are verified first (a streaming read, once per pack).
    """
    pack.index.check()
    entries = sorted((offset, sha) for sha, offset, _ in pack.index.iterentries())
    found: list[tuple[str, int]] = []
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        trailer = os.pread(fd, 20, size - 20) if size >= 32 else b""
        if trailer != pack.index.get_pack_checksum():
            raise ValueError("the pack file does not match its index (truncated or replaced?)")
        if compute_file_sha(f, SHA1.hash_func, end_ofs=-20).digest() != trailer:
            raise ValueError("the pack file's checksum does not match its contents (damaged on disk?)")

        def read_at(pos: int, n: int) -> bytes:
            return os.pread(fd, n, pos)

        for offset, sha in entries:
            _, object_size = object_size_at(read_at, offset)
            if object_size > limit:
                found.append((sha_to_hex(sha).decode("ascii"), object_size))
    return tuple(sorted(found))
