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
"""

from __future__ import annotations

import threading
import zlib
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from dulwich.object_format import SHA1
from dulwich.objects import Commit
from dulwich.pack import Pack, PackData

from adapters.git.store import GitStore, ObjectWalk
from commands.git_view import GitViewError

_OFS_DELTA, _REF_DELTA = 6, 7


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A little-endian base-128 size (git's delta header) at `pos`: (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated size")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if not byte & 0x80:
            return value, pos


def _object_size(data: PackData, offset: int) -> int:
    """An object's uncompressed size from its pack entry header (a delta: its target's size)."""
    f = data._file
    f.seek(offset)
    head = f.read(64)
    byte = head[0]
    type_num = (byte >> 4) & 7
    size, shift, pos = byte & 0x0F, 4, 1
    while byte & 0x80:
        byte = head[pos]
        size |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
    if type_num == _OFS_DELTA:
        while head[pos] & 0x80:
            pos += 1
        pos += 1
    elif type_num == _REF_DELTA:
        pos += 20
    else:
        return size
    f.seek(offset + pos)
    start = zlib.decompressobj().decompress(f.read(256), 32)
    _, after = _varint(start, 0)
    target, _ = _varint(start, after)
    return target


DEFAULT_MAX_OPEN_PACKS = 128


class PackView:
    def __init__(self, store: GitStore, *, max_open: int = DEFAULT_MAX_OPEN_PACKS) -> None:
        self.store = store
        self._max_open = max_open
        self._open: OrderedDict[str, Pack] = OrderedDict()
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
        """(sha, uncompressed size) of every object of the pack larger than `limit`, by sha.

        Read from the object headers only (a delta's size is its result's, from the delta
        header), so the answer depends on the pack's bytes alone.
        """
        with self._lock:
            try:
                pack = self._pack(digest)
                found = [
                    (sha.decode(), size)
                    for sha, offset, _ in pack.index.iterentries()
                    if (size := _object_size(pack.data, offset)) > limit
                ]
            except GitViewError:
                raise
            except (OSError, ValueError, IndexError, zlib.error) as exc:
                raise GitViewError(f"cannot read pack {digest}: {exc}") from exc
        return sorted(found)

    def close(self) -> None:
        with self._lock:
            for pack in self._open.values():
                pack.close()
            self._open.clear()

    @contextmanager
    def _walk(self, packs: Sequence[str], complete: Collection[str]) -> Iterator[ObjectWalk]:
        with self._lock:  # the LRU may close a pack another caller is reading
            try:
                sources = [self._pack(d) for d in reversed(packs)]
                yield ObjectWalk(sources, stop=complete)
            except GitViewError:
                raise
            except (OSError, ValueError) as exc:
                raise GitViewError(f"cannot read the repository's packs: {exc}") from exc
            finally:
                # Only between walks: a walk needs every pack it lists open.
                while len(self._open) > self._max_open:
                    _, old = self._open.popitem(last=False)
                    old.close()

    def _pack(self, digest: str) -> Pack:
        pack = self._open.get(digest)
        if pack is not None:
            self._open.move_to_end(digest)
            return pack
        if not self.store.has_pack(digest):
            raise GitViewError(f"pack {digest} is not held by this node")
        pack = Pack(str(self.store.pack_base(digest)), object_format=SHA1)
        self._open[digest] = pack
        return pack
