"""`LedgerHost`: runs the pure ledger on a node, beside consensus, off its event loop.

It wires four parts, each with one job:

- `PackAvailability`: which packs a block needs, and asking peers for missing ones;
- `BlockExecution`: the finalized state, and blocks executed ahead of finality for the
  app hash their children must carry;
- `BlockApplication`: writing a final block's result to the event store, the read
  models and the bare repositories;
- `PositionWaiters`: requests waiting for a receipt or a log height.

Executing and applying blocks reads packs, walks objects and commits to SQLite and
DuckDB, which can take long for a large push. All of it runs on one worker thread, so
consensus timers and votes on the event loop never wait for it: when consensus asks for
an app hash not computed yet, it gets None ("wait"), the worker computes it, and
`app_ready` tells consensus to ask again. Finalized blocks queue (in order) and are
applied by the worker as far as their packs are here. Before `start`, everything runs
inline on the caller's thread (recovery at startup, tests).

Only deterministic rejections become receipts. If executing a block fails because this
node's copy of a pack is bad, the copy is checked, dropped and fetched again; any other
failure stops the node, naming the cause.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from adapters.consensus_host import NodeHalt
from adapters.event_store import EventStore
from adapters.git.pack_view import PackView
from adapters.git.repair import RepoRepairs, RepoTarget
from adapters.git.store import GitStore
from adapters.ledger.application import BlockApplication, LedgerDivergence
from adapters.ledger.availability import PackAvailability
from adapters.ledger.execution import BlockExecution
from adapters.ledger.positions import PositionWaiters
from commands.envelope import EnvelopeError, decode_transaction
from commands.git_view import GitViewError
from commands.ledger import BlockContext, GenesisAdmin, Receipt, genesis_state
from consensus.genesis import Genesis
from consensus.interface import Finalized, FinalizedStore
from consensus.types import Block, genesis_block
from domain.rules import ChainRules
from domain.state import LedgerState
from projections.projector import Projector
from projections.read_models import ReadModels

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["LedgerDivergence", "LedgerHost", "LedgerPorts", "genesis_admin"]


class LedgerPorts(Protocol):
    """What the ledger needs from the rest of the node (called on the event loop)."""

    def block(self, block_hash: bytes) -> Block | None:
        """A block consensus knows but that is not final yet (the replica's cache)."""
        ...

    def want_pack(self, digest: str) -> None:
        """Fetch this pack from peers (idempotent)."""
        ...

    def evict_tx(self, raw: bytes) -> None:
        """Drop a pending transaction from the mempool."""
        ...

    def app_ready(self) -> None:
        """Something consensus waited for is here: ask again."""
        ...

    def halt(self, halt: NodeHalt) -> None:
        """Stop the node, loudly."""
        ...


class _Unwired:
    """Ports of a ledger that runs alone (tests, offline tools): nothing to ask or tell."""

    def block(self, block_hash: bytes) -> Block | None:
        return None

    def want_pack(self, digest: str) -> None:
        pass

    def evict_tx(self, raw: bytes) -> None:
        pass

    def app_ready(self) -> None:
        pass

    def halt(self, halt: NodeHalt) -> None:
        raise halt


def genesis_admin(genesis: Genesis) -> GenesisAdmin | None:
    """The bootstrap site admin named in genesis (`"admin": {"login", "email", "token_hash", ...}`)."""
    raw = genesis.extra.get("admin")
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("login"), str)
        or not isinstance(raw.get("email"), str)
    ):
        raise ValueError('genesis "admin" must be an object with string "login" and "email"')
    token_hash = raw.get("token_hash")
    token_id = raw.get("token_id")
    scopes = raw.get("scopes", [])
    return GenesisAdmin(
        login=raw["login"],
        email=raw["email"],
        token_hash=token_hash if isinstance(token_hash, str) else None,
        token_id=token_id if isinstance(token_id, str) else None,
        scopes=tuple(s for s in scopes if isinstance(s, str)),
    )


class LedgerHost:
    def __init__(
        self,
        *,
        genesis: Genesis,
        data_dir: Path,
        event_store_url: str | None = None,
        git: GitStore | None = None,
        ports: LedgerPorts | None = None,
    ) -> None:
        self.chain_id = genesis.chain_id
        self.validators = tuple(v.pubkey for v in genesis.validators)
        self.genesis = genesis
        self.rules = ChainRules.from_genesis(genesis.extra)
        self._ports: LedgerPorts = ports if ports is not None else _Unwired()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None
        self._halted = False
        g = genesis_state(genesis.chain_id, genesis_admin(genesis), genesis.genesis_time_ms, self.validators)
        self.events = EventStore(data_dir=data_dir, url=event_store_url)
        projector = Projector(data_dir / "readmodels.duckdb")
        self.read = ReadModels(projector)
        if not self.events.has_height(0):
            self.events.append_block(0, g.events, (), g.app_hash)
        elif self.events.app_hash(0) != g.app_hash:
            raise LedgerDivergence("the event store belongs to a different genesis; use a fresh data dir")
        if not projector.has_height(0):
            projector.apply_block(0, g.events)
        self.git = git
        self.git_view = PackView(git) if git is not None else None
        #: Bare repositories whose writing failed here, to rebuild from the ledger.
        self.repairs = (
            None if git is None else RepoRepairs(git, self.git_target, self._want_pack, apply=self.on_worker)
        )
        self.availability = PackAvailability(git, want=self._want_pack, evict=self._evict)
        self.execution = BlockExecution(
            chain_id=self.chain_id,
            validators=self.validators,
            rules=self.rules,
            git=self.git_view,
            state=g.state,
            tip=genesis_block(genesis.chain_id, genesis.genesis_time_ms),
        )
        self.application = BlockApplication(self.events, projector, git, self.repairs)
        self.positions = PositionWaiters(lambda: self.height, self._stored_receipt)
        # Finalized blocks waiting (in order) to be applied, e.g. for their packs.
        self._queue: deque[Block] = deque()
        self._queued: dict[bytes, Block] = {}
        self._speculating: set[bytes] = set()  # block hashes handed to the worker (loop only)
        self.stats = {"blocks_applied": 0, "events_applied": 0, "packs_refetched": 0}

    # ------------------------------------------------------------------ reading

    @property
    def state(self) -> LedgerState:
        """The finalized, applied state (read by the API; whole values, never torn ones)."""
        return self.execution.state

    @property
    def tip(self) -> Block:
        return self.execution.tip

    @property
    def height(self) -> int:
        return self.execution.tip.height

    @property
    def waiting_for_packs(self) -> bool:
        return bool(self._queue) and bool(self.availability.missing(self._queue[0].txs))

    def next_context(self, timestamp_ms: int) -> BlockContext:
        """The context of a block on the applied tip (for prechecks)."""
        return self.execution.context(self.height + 1, timestamp_ms)

    def _stored_receipt(self, tx_id_hex: str) -> Receipt | None:
        raw = self.events.receipt(tx_id_hex)
        return None if raw is None else Receipt.from_json(dict(raw))

    def receipt(self, tx_id_hex: str) -> Receipt | None:
        """The receipt of a transaction applied here."""
        return self.positions.applied_receipt(tx_id_hex)

    async def wait_receipt(self, tx_id_hex: str, timeout_s: float) -> Receipt | None:
        return await self.positions.wait_receipt(tx_id_hex, timeout_s)

    async def wait_height(self, height: int, timeout_s: float) -> bool:
        return await self.positions.wait_height(height, timeout_s)

    def status(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "app_hash": self.execution.applied.app_hash.hex(),
            "speculative_blocks": self.execution.speculative,
            "blocks_waiting_for_packs": len(self._queue),
            "speculative_executions": self.execution.executed,
            **self.stats,
        }

    # ------------------------------------------------------------------ running

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, execute and apply on the worker thread, and report on `loop`."""
        self._loop = loop
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        if self._queue:
            self._kick()

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        if self.git_view is not None:
            self.git_view.close()
        self.application.close()

    def on_worker(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """Run `work` on the worker, after whatever is queued there (e.g. a repair's last step)."""
        loop = asyncio.get_running_loop()
        if self._worker is None:
            fut: asyncio.Future[T] = loop.create_future()
            try:
                fut.set_result(work())
            except Exception as exc:
                fut.set_exception(exc)
            return fut
        return asyncio.wrap_future(self._worker.submit(work), loop=loop)

    def _on_loop(self, fn: Callable[..., object], *args: object) -> None:
        """Call `fn` on the event loop (at once when running inline)."""
        loop = self._loop
        if loop is None:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def _want_pack(self, digest: str) -> None:
        self._on_loop(self._ports.want_pack, digest)

    def _evict(self, raw: bytes) -> None:
        self._on_loop(self._ports.evict_tx, raw)

    def _halt(self, halt: NodeHalt) -> None:
        """Stop applying and executing, and stop the node (from any thread)."""
        if self._halted:
            return
        self._halted = True
        log.critical("ledger halted: %s", halt)
        if self._loop is None:
            raise halt
        self._on_loop(self._ports.halt, halt)

    # ------------------------------------------------------------------ consensus

    def admit(self, raw: bytes) -> str | None:
        """Why a transaction should not enter the mempool (None: it may). Cheap, structural:
        keeps junk and replays out of blocks; authorization is decided when it is applied."""
        if self.state.is_applied(hashlib.sha256(raw).hexdigest()):
            return "transaction already applied"
        try:
            tx = decode_transaction(raw)
        except EnvelopeError as exc:
            return str(exc)
        if tx.chain_id != self.chain_id:
            return f"transaction is for chain {tx.chain_id!r}, this is {self.chain_id!r}"
        return None

    def tx_available(self, raw: bytes) -> bool:
        return self.availability.tx_available(raw)

    def block_available(self, block: Block) -> bool:
        """Whether this node holds every pack the block names; on a yes, start executing it
        already (its child's proposal will need the app hash after it)."""
        available = self.availability.block_available(block)
        if available and self._worker is not None:
            self._speculate(block)
        return available

    def app_hash_for_child(self, parent: Block) -> bytes | None:
        """The app hash a block extending `parent` must carry (the state hash after `parent`);
        None until it is known (consensus is told with `app_ready`)."""
        known = self.execution.cached_app_hash(parent)
        if known is not None or self._halted:
            return known
        if self._worker is not None:
            self._speculate(parent)
            return None
        chain = self._chain_to(parent)
        if chain is None or not all(self.availability.block_available(b) for b in chain):
            return None
        try:
            return self.execution.execute_chain(chain)
        except GitViewError as exc:
            self._data_fault(exc)
            return None

    def _chain_to(self, block: Block) -> list[Block] | None:
        """The unapplied blocks from the tip (or the last executed one) up to `block`, oldest first."""
        chain = [block]
        tip_height = self.execution.tip.height
        h = block.parent
        while not self.execution.knows(h):
            b = self._queued.get(h) or self._ports.block(h)
            if b is None or b.height <= tip_height:
                return None
            chain.append(b)
            h = b.parent
        chain.reverse()
        return chain

    def _speculate(self, block: Block) -> None:
        """Hand `block` (and unexecuted ancestors) to the worker, once (event loop only)."""
        if block.hash in self._speculating or self.execution.knows(block.hash) or self._halted:
            return
        if block.height <= self.execution.tip.height:
            return
        chain = self._chain_to(block)
        if chain is None or not all(self.availability.block_available(b) for b in chain):
            return
        assert self._worker is not None
        self._speculating.add(block.hash)
        self._worker.submit(self._execute_on_worker, chain)

    def _execute_on_worker(self, chain: list[Block]) -> None:
        try:
            if not self._halted:
                self.execution.execute_chain(chain)
        except GitViewError as exc:
            self._data_fault(exc)
        except Exception as exc:
            self._halt(self._fault(f"executing block {chain[-1].height} failed", exc))
        finally:
            self._on_loop(self._executed, chain[-1].hash)

    def _executed(self, block_hash: bytes) -> None:
        self._speculating.discard(block_hash)
        self._ports.app_ready()

    # ------------------------------------------------------------------ applying

    def on_finalized(self, f: Finalized) -> None:
        self._enqueue(f.block)
        self._kick()

    def pack_ready(self, digest: str) -> None:
        """A pack arrived: apply the finalized blocks that waited for it."""
        self._kick()

    def _enqueue(self, block: Block) -> None:
        last = self._queue[-1] if self._queue else self.execution.tip
        if block.height <= last.height:
            return
        self._queued[block.hash] = block
        self._queue.append(block)

    def _kick(self) -> None:
        if self._halted:
            return
        if self._worker is None:
            self.drain()
        else:
            self._worker.submit(self._drain_on_worker)

    def _drain_on_worker(self) -> None:
        try:
            self.drain()
        except NodeHalt as halt:
            self._halt(halt)
        except Exception as exc:
            self._halt(self._fault("applying a finalized block failed", exc))

    def drain(self) -> None:
        """Apply queued finalized blocks in order, as far as their packs are here (worker or inline).

        A block leaves the queue only once applied, so a failure names the block that failed.
        """
        while self._queue and not self._halted:
            block = self._queue[0]
            if not self.availability.block_available(block):
                return
            try:
                receipts = self.apply_finalized(block)
            except GitViewError as exc:
                self._data_fault(exc)
                return
            self._queue.popleft()
            self._queued.pop(block.hash, None)
            self._on_loop(self.positions.notify, block.height, tuple(receipts))

    def apply_finalized(self, block: Block) -> list[Receipt]:
        """Apply one finalized block (the next after the tip): execute, persist, make visible."""
        tip = self.execution.tip
        if block.height <= tip.height:
            return []  # already applied (idempotent replay)
        if block.parent != tip.hash:
            raise NodeHalt(f"finalized block {block.height} does not extend the applied tip {tip.height}")
        if block.app_hash != self.execution.applied.app_hash:
            raise LedgerDivergence(
                f"app hash mismatch at height {block.height}: the block commits to "
                f"{block.app_hash.hex()} but this node computed {self.execution.applied.app_hash.hex()} "
                "for its parent; this node's state has diverged and it stops applying"
            )
        result = self.execution.result_for(block)
        self.application.persist(block, result)
        self.execution.advance(block, result)
        self.stats["blocks_applied"] += 1
        self.stats["events_applied"] += len(result.events)
        return list(result.receipts)

    def recover(self, store: FinalizedStore, progress: Callable[[int, int], None] | None = None) -> None:
        """Re-execute the finalized chain from genesis, writing whatever the stores miss (inline)."""
        last = store.last_height()
        started = time.monotonic()
        for h in range(self.height + 1, last + 1):
            f = store.get(h)
            if f is None:
                raise NodeHalt(f"finalized block {h} is missing from the block store")
            self._enqueue(f.block)
            if len(self._queue) == 1:
                self.drain()
            if progress is not None and (h % 500 == 0 or h == last):
                progress(h, last)
        if self._queue:
            log.warning("ledger replay stopped at height %d: waiting for packs from peers", self.height)
        elif last:
            log.info("ledger replayed %d blocks in %.1f s", last, time.monotonic() - started)

    # ------------------------------------------------------------------ faults

    def _fault(self, doing: str, exc: BaseException) -> NodeHalt:
        if isinstance(exc, NodeHalt):
            return exc
        return NodeHalt(f"{doing}: {type(exc).__name__}: {exc}")

    def _data_fault(self, exc: GitViewError) -> None:
        """This node could not read packs every node holds: drop its bad copies and fetch them
        again, or stop if its copies are sound (the cause is then not the data)."""
        if self.git is None:
            self._halt(NodeHalt(f"git objects unavailable: {exc}"))
            return
        bad = []
        for digest in exc.packs:
            if not self.git.has_pack(digest):
                self._want_pack(digest)  # simply missing: fetch it
                bad.append(digest)
            elif not self.git.verify_pack(digest):
                log.error("pack %s on this node is corrupt; fetching it again from peers", digest)
                if self.git_view is not None:
                    self.git_view.forget(digest)
                self.git.discard_pack(digest)
                self.stats["packs_refetched"] += 1
                self._want_pack(digest)
                bad.append(digest)
        if not bad:
            self._halt(NodeHalt(f"reading git objects failed although this node's packs are sound: {exc}"))

    # ------------------------------------------------------------------ repositories

    def git_target(self, repo_id: str) -> RepoTarget | None:
        """What the applied state says the repository's bare copy must hold."""
        repo = self.state.repo(repo_id)
        if repo is None:
            return None
        return RepoTarget(self.state.repo_packs(repo_id), dict(self.state.refs(repo_id)), repo.default_branch)

    def check_repositories(self) -> int:
        """Mark every bare repository whose refs or HEAD differ from the applied state; the count."""
        if self.git is None or self.repairs is None:
            return 0
        marked = 0
        for repo_id in self.state.repo_ids():
            target = self.git_target(repo_id)
            if target is None or (not target.refs and not self.git.exists(repo_id)):
                continue
            if not self.git.refs_match(repo_id, target.refs, target.head_branch):
                self.repairs.mark(repo_id, "its refs on disk differ from the ledger's")
                marked += 1
        return marked
