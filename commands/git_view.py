"""The git-object oracle: the only way a handler may look at git objects.

A push names the pack that carries its new objects. The data-availability rule (a
validator votes for a block only if it holds every pack the block's pushes name)
guarantees that every node can answer these questions about a push in a finalized
block, so the answers are part of the deterministic input of the handler.

Contract for implementations (the node's git adapter), which determinism depends on:

- Answer from exactly two sources: the repository's objects as of the parent block
  (the packs named by the successful pushes to it, i.e. its RefsUpdated events, in
  earlier blocks of the chain being executed) and the pack named by `pack_digest`
  ("" = none). Not the packs of other pushes in the same block, not a pack still in
  quarantine for some other push, and never garbage-collect objects: every node must
  give the same answer.
- A node that executes a block speculatively (before its parent is final) must count
  the packs of the successful pushes of the unfinal ancestors it executed: the
  `BlockContext` carries the view per block, so the node can bind one to the chain.
- When the view cannot answer (a named pack it does not hold, which breaks the
  data-availability rule; an I/O error), raise `GitViewError`, never answer False:
  `execute_block` lets it propagate, so the node records no outcome for the block and
  stops loudly instead of forking silently. (Any other exception from a handler becomes
  a 500 receipt, which would be wrong here: the other nodes can answer.)

Shas are 40 lowercase hex characters. `MemoryGitView` is an in-memory stand-in for tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol


class GitViewError(Exception):
    """The node cannot answer a question about git objects that every node must be able to."""


class GitView(Protocol):
    def has_commit(self, repo_id: str, pack_digest: str, sha: str) -> bool:
        """Whether `sha` is a commit whose history is present (the repo's objects + the pack)."""
        ...

    def has_object(self, repo_id: str, pack_digest: str, sha: str) -> bool:
        """Whether `sha` is any object (commit, annotated tag, ...) present, with what it points to.

        Used for refs/tags/*, which may point at annotated tag objects.
        """
        ...

    def is_ancestor(self, repo_id: str, pack_digest: str, ancestor: str, descendant: str) -> bool:
        """Whether commit `ancestor` is `descendant` or reachable from it through parents."""
        ...


class MemoryGitView:
    """A GitView over dicts: per-repository and per-pack commits (sha -> parents) and other objects.

    Objects of a pack are only visible through that pack's digest until `absorb` moves
    them into the repository (what a node does once the push that named the pack applied).
    Naming a pack it never heard of raises GitViewError, as the contract asks.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, tuple[str, ...]]] = {}
        self.packs: dict[str, dict[str, tuple[str, ...]]] = {}
        self.repo_objects: dict[str, set[str]] = {}
        self.pack_objects: dict[str, set[str]] = {}

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

    def absorb(self, repo_id: str, pack: str) -> None:
        """Make a pack's objects part of the repository."""
        self.repos.setdefault(repo_id, {}).update(self.packs.get(pack, {}))
        self.repo_objects.setdefault(repo_id, set()).update(self.pack_objects.get(pack, set()))

    def add_pack(self, pack: str) -> None:
        """Make a pack known even if it holds no objects (e.g. a push that only moves refs)."""
        self.packs.setdefault(pack, {})

    def _check_pack(self, pack_digest: str) -> None:
        if pack_digest and pack_digest not in self.packs and pack_digest not in self.pack_objects:
            raise GitViewError(f"pack {pack_digest} is not held by this node")

    def _commits(self, repo_id: str, pack_digest: str) -> tuple[Mapping[str, tuple[str, ...]], ...]:
        self._check_pack(pack_digest)
        sources: list[Mapping[str, tuple[str, ...]]] = [self.repos.get(repo_id, {})]
        if pack_digest:
            sources.append(self.packs.get(pack_digest, {}))
        return tuple(sources)

    def _parents(self, repo_id: str, pack_digest: str, sha: str) -> tuple[str, ...] | None:
        for source in self._commits(repo_id, pack_digest):
            if sha in source:
                return source[sha]
        return None

    def has_commit(self, repo_id: str, pack_digest: str, sha: str) -> bool:
        # The whole history must be present, as git's connectivity check requires.
        seen: set[str] = set()
        todo = [sha]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            parents = self._parents(repo_id, pack_digest, current)
            if parents is None:
                return False
            todo.extend(parents)
        return True

    def has_object(self, repo_id: str, pack_digest: str, sha: str) -> bool:
        self._check_pack(pack_digest)
        if sha in self.repo_objects.get(repo_id, set()):
            return True
        if pack_digest and sha in self.pack_objects.get(pack_digest, set()):
            return True
        return self.has_commit(repo_id, pack_digest, sha)

    def is_ancestor(self, repo_id: str, pack_digest: str, ancestor: str, descendant: str) -> bool:
        seen: set[str] = set()
        todo = [descendant]
        while todo:
            current = todo.pop()
            if current == ancestor:
                return True
            if current in seen:
                continue
            seen.add(current)
            todo.extend(self._parents(repo_id, pack_digest, current) or ())
        return False
