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
from collections import OrderedDict
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager

from dulwich.object_format import SHA1
from dulwich.objects import Commit
from dulwich.pack import Pack

from adapters.git.store import GitStore, ObjectWalk
from commands.git_view import GitViewError

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
