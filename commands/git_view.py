"""The git-object oracle: the only way a handler may look at git objects.

Every object of a repository arrived in the pack of some accepted push, and the ledger
state lists those packs (`LedgerState.repo_packs`). A handler asks its questions about
an explicit list of packs: the repository's accepted packs at that point of the block
(pushes accepted earlier in the same block included) plus the pack the push names.
The data-availability rule (a validator votes for a block only if it holds every pack
the block's pushes name, and fetches missing ones by digest before applying a block)
means every node can answer about exactly those packs, so the answers are part of the
deterministic input of the handler, on replay from genesis and under speculation alike.

Contract for implementations (the node's git adapter), which determinism depends on:

- Answer from exactly the objects of the packs listed (plus, for `MemoryGitView`, the
  objects a test seeded into the repository), never from whatever else the node holds.
- `complete` names commits the caller knows to be complete in those packs (the ref tips
  of the state: refs are only ever set to complete commits); a walk may stop there. The
  answer must be the same with or without it.
- When the view cannot answer (a listed pack it does not hold, an I/O error, a corrupt
  copy: any failure to read), raise `GitViewError` naming the packs it was reading, never
  answer False: `execute_block` lets it propagate, so the node records no outcome for the
  block, checks those packs, fetches again any it holds a bad copy of, and tries again (or
  stops loudly) instead of forking silently.

Shas are 40 lowercase hex characters. `MemoryGitView` is an in-memory stand-in for tests.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol


class GitViewError(Exception):
    """The node cannot answer a question about git objects that every node must be able to.

    `packs` names the packs the question was about (to check and fetch again).
    """

    def __init__(self, message: str, packs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.packs = tuple(packs)


class GitView(Protocol):
    def has_commit(
        self, repo_id: str, packs: Sequence[str], sha: str, complete: Collection[str] = ()
    ) -> bool:
        """Whether `sha` is a commit whose whole history (commits, trees, blobs) is in `packs`."""
        ...

    def has_object(
        self, repo_id: str, packs: Sequence[str], sha: str, complete: Collection[str] = ()
    ) -> bool:
        """Whether `sha` is any object (commit, annotated tag, ...) present, with what it points to.

        Used for refs/tags/*, which may point at annotated tag objects.
        """
        ...

    def is_ancestor(self, repo_id: str, packs: Sequence[str], ancestor: str, descendant: str) -> bool:
        """Whether commit `ancestor` is `descendant` or reachable from it through parents."""
        ...

    def oversized_objects(self, digest: str, limit: int) -> list[tuple[str, int]]:
        """(sha, uncompressed size) of every object in pack `digest` larger than `limit`, by sha.

        The size is the object's inflated size (for a delta, the size of its result), as
        the pack's headers state it, so the answer depends on the pack's bytes only.
        """
        ...


class MemoryGitView:
    """A GitView over dicts: per-repository and per-pack commits (sha -> parents) and other objects.

    Objects seeded into a repository (no `pack`) are always visible there; a pack's are
    visible only when the pack is listed. Listing a pack it never heard of raises
    GitViewError, as the contract asks.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, tuple[str, ...]]] = {}
        self.packs: dict[str, dict[str, tuple[str, ...]]] = {}
        self.repo_objects: dict[str, set[str]] = {}
        self.pack_objects: dict[str, set[str]] = {}
        self.sizes: dict[str, dict[str, int]] = {}  # pack -> {sha: size}, for declared sizes

    def add_commit(self, repo_id: str, sha: str, parents: Iterable[str] = (), *, pack: str = "") -> None:
        """Store a commit in the repository, or in the pack `pack` when given."""
        target = self.packs.setdefault(pack, {}) if pack else self.repos.setdefault(repo_id, {})
        target[sha] = tuple(parents)

    def add_object(self, repo_id: str, sha: str, *, pack: str = "") -> None:
        """Store a non-commit object (e.g. an annotated tag)."""
        target = (
            self.pack_objects.setdefault(pack, set())
            if pack
            else self.repo_objects.setdefault(repo_id, set())
        )
        target.add(sha)

    def set_size(self, pack: str, sha: str, size: int) -> None:
        """Declare the uncompressed size of an object in a pack (others count as small)."""
        self.sizes.setdefault(pack, {})[sha] = size

    def oversized_objects(self, digest: str, limit: int) -> list[tuple[str, int]]:
        self._check_packs([digest])
        return sorted((sha, n) for sha, n in self.sizes.get(digest, {}).items() if n > limit)

    def add_pack(self, pack: str) -> None:
        """Make a pack known even if it holds no objects (e.g. a push that only moves refs)."""
        self.packs.setdefault(pack, {})

    def _check_packs(self, packs: Sequence[str]) -> None:
        for pack in packs:
            if pack not in self.packs and pack not in self.pack_objects:
                raise GitViewError(f"pack {pack} is not held by this node", (pack,))

    def _commits(self, repo_id: str, packs: Sequence[str]) -> tuple[Mapping[str, tuple[str, ...]], ...]:
        self._check_packs(packs)
        return (self.repos.get(repo_id, {}), *(self.packs.get(p, {}) for p in packs))

    def _parents(self, repo_id: str, packs: Sequence[str], sha: str) -> tuple[str, ...] | None:
        for source in self._commits(repo_id, packs):
            if sha in source:
                return source[sha]
        return None

    def has_commit(
        self, repo_id: str, packs: Sequence[str], sha: str, complete: Collection[str] = ()
    ) -> bool:
        # The whole history must be present, as git's connectivity check requires.
        seen: set[str] = set()
        todo = [sha]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            parents = self._parents(repo_id, packs, current)
            if parents is None:
                return False
            todo.extend(parents)
        return True

    def has_object(
        self, repo_id: str, packs: Sequence[str], sha: str, complete: Collection[str] = ()
    ) -> bool:
        self._check_packs(packs)
        if sha in self.repo_objects.get(repo_id, set()):
            return True
        if any(sha in self.pack_objects.get(p, set()) for p in packs):
            return True
        return self.has_commit(repo_id, packs, sha)

    def is_ancestor(self, repo_id: str, packs: Sequence[str], ancestor: str, descendant: str) -> bool:
        seen: set[str] = set()
        todo = [descendant]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            if current in seen:
                continue
            seen.add(current)
            todo.extend(self._parents(repo_id, packs, current) or ())
        return False
