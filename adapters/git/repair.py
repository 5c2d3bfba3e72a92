"""Repairing a node's bare repositories when writing them failed for a local reason.

A bare repository is derived state: the packs of the repository's accepted pushes plus
its finalized refs and default branch, all in the ledger. Writing it can fail on one node
for reasons of that node alone (a full disk, a damaged directory, an unforeseen file).
Such a failure must not stop the chain, and it must not change what the node records:
the block stays applied, and the repository is marked here as needing repair.

Until it is repaired, reads of that repository on this node answer 503 (other nodes
serve it) and `/health/ready` names it. `RepoRepairs.run` rebuilds marked repositories
from the ledger with backoff: a fresh bare repository with every accepted pack and the
refs of the applied state, swapped in atomically. Packs the node lacks are fetched from
peers first. `stele node repair-repo` asks a running node to repair one at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from adapters.git.store import GitStore, MissingPacks

log = logging.getLogger(__name__)

BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
#: How long to wait before retrying a repair that waits for packs from peers.
PACK_RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class RepoTarget:
    """What the ledger says a repository holds: its packs, refs and default branch."""

    packs: tuple[str, ...]
    refs: Mapping[str, str]
    head_branch: str


@dataclass(slots=True)
class Repair:
    repo_id: str
    reason: str
    since: float
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""
    #: Bumped by `mark`: a failure during a rebuild means the rebuild's result is stale.
    generation: int = field(default=0)


class RepoRepairs:
    """The repositories this node must rebuild, and the loop that rebuilds them."""

    def __init__(
        self,
        store: GitStore,
        target: Callable[[str], RepoTarget | None],
        want_pack: Callable[[str], None] = lambda _d: None,
        *,
        apply: Callable[[Callable[[], bool]], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        base_delay_s: float = BASE_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
    ) -> None:
        """`apply(work)` runs `work` where blocks are applied (the ledger's worker), so the last
        step of a repair never runs beside an apply; None: run it on the caller's thread."""
        self.store = store
        self.target = target
        self.want_pack = want_pack
        self._apply = apply
        self.clock = clock
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._pending: dict[str, Repair] = {}
        self._lock = threading.RLock()  # marked from the ledger's worker, repaired from the loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._attempted: list[asyncio.Future[None]] = []  # woken after every attempt
        self.stats = {"marked": 0, "repaired": 0, "failed_attempts": 0}

    # ------------------------------------------------------------------ state

    def mark(self, repo_id: str, reason: str) -> None:
        """Record that the repository on disk no longer matches the ledger (any thread; logged
        once per repair)."""
        with self._lock:
            entry = self._pending.get(repo_id)
            if entry is None:
                log.error("repository %s needs repair on this node: %s", repo_id, reason)
                self._pending[repo_id] = Repair(repo_id, reason, self.clock())
                self.stats["marked"] += 1
            else:
                entry.generation += 1
                entry.last_error = reason
        self._notify()

    def _notify(self) -> None:
        loop = self._loop
        if loop is None:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def needs_repair(self, repo_id: str) -> bool:
        return repo_id in self._pending

    def pending(self) -> list[Repair]:
        with self._lock:
            return sorted(self._pending.values(), key=lambda r: r.since)

    def __len__(self) -> int:
        return len(self._pending)

    def wake(self, repo_id: str | None = None) -> None:
        """Try now (an operator asked, or a pack it waited for arrived)."""
        with self._lock:
            for entry in self._pending.values():
                if repo_id is None or entry.repo_id == repo_id:
                    entry.next_try = 0.0
        self._notify()

    # ------------------------------------------------------------------ repairing

    def rebuild(self, repo_id: str) -> RepoTarget | None:
        """Rebuild the repository from the ledger's current view (blocking; in a worker thread).

        Returns the target it rebuilt to; raises `MissingPacks` or an OSError on failure.
        """
        target = self.target(repo_id)
        if target is None:
            return None  # the repository is gone from the ledger: nothing to serve
        self.store.rebuild(repo_id, target.packs, target.refs, target.head_branch)
        return target

    def finish(self, repo_id: str, generation: int) -> bool:
        """After a rebuild: bring the refs up to what was applied meanwhile, then unmark.

        Runs where blocks are applied (never beside an apply), so nothing moves under it.
        """
        entry = self._pending.get(repo_id)
        if entry is None:
            return True
        target = self.target(repo_id)
        if target is not None:
            for digest in target.packs:
                self.store.import_pack(repo_id, digest)
            self.store.write_refs(repo_id, target.refs)
            self.store.set_head(repo_id, target.head_branch)
        with self._lock:
            if entry.generation != generation:
                return False  # another write failed while rebuilding: go again
            del self._pending[repo_id]
        self.stats["repaired"] += 1
        log.info("repository %s repaired after %d attempt(s)", repo_id, entry.attempts + 1)
        return True

    def _failed(self, entry: Repair, error: BaseException) -> None:
        entry.attempts += 1
        self.stats["failed_attempts"] += 1
        if isinstance(error, MissingPacks):
            for digest in error.digests:
                self.want_pack(digest)
            entry.last_error = f"waiting for {len(error.digests)} pack(s) from peers"
            entry.next_try = self.clock() + PACK_RETRY_S
            return
        entry.last_error = f"{type(error).__name__}: {error}"
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** min(entry.attempts - 1, 16))
        entry.next_try = self.clock() + delay
        log.warning(
            "repairing repository %s failed (attempt %d, next in %.0f s): %s",
            entry.repo_id,
            entry.attempts,
            delay,
            entry.last_error,
        )

    async def repair_once(self, repo_id: str) -> bool:
        """One attempt: rebuild in a worker thread, then `finish` on the loop that applies blocks."""
        entry = self._pending.get(repo_id)
        if entry is None:
            return True
        generation = entry.generation
        try:
            await asyncio.to_thread(self.rebuild, repo_id)
            if self._apply is None:
                return self.finish(repo_id, generation)
            return await self._apply(lambda: self.finish(repo_id, generation))
        except Exception as exc:  # a local fault of any kind: retry later, loudly
            with self._lock:
                current = self._pending.get(repo_id)
                if current is not None:
                    self._failed(current, exc)
            return False
        finally:
            waiters, self._attempted = self._attempted, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_repaired(self, repo_id: str, timeout_s: float) -> bool:
        """Wait (bounded) until the repository is repaired; False if it still waits after that."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.needs_repair(repo_id):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._attempted.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                return not self.needs_repair(repo_id)
        return True

    async def run(self) -> None:
        """Repair marked repositories until cancelled, each with its own backoff."""
        self._loop = asyncio.get_running_loop()
        while True:
            now = self.clock()
            due = [r.repo_id for r in self.pending() if r.next_try <= now]
            for repo_id in due:
                await self.repair_once(repo_id)
            self._wake.clear()
            waits = [r.next_try - self.clock() for r in self.pending()]
            timeout = max(0.05, min(waits)) if waits else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
