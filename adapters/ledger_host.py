"""Runs the pure ledger on a node: speculative execution for consensus, and applying final blocks.

Consensus asks for the app hash a child of some block must carry; that is the state
hash after the block, which may not be final yet, so blocks are executed on forks of
the finalized state and the results cached by block hash. When a block is finalized
its cached result (or a fresh execution) is written to the event store (events,
receipts and the height in one transaction) and the DuckDB projections, the pushes it
accepted are carried out on the bare repositories (pack imported, refs written), and
the fork is merged into the finalized state.

Data availability: a block whose pushes name packs this node does not hold is neither
voted for (`block_available` answers False, so consensus waits) nor applied: finalized
blocks queue until their packs have been fetched from peers (`want_pack`, wired to the
node's blob sync), and `drain` applies them once `pack_ready` says they are here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adapters.consensus_host import NodeHalt
from adapters.event_store import EventStore
from adapters.git.pack_view import PackView
from adapters.git.repair import RepoRepairs, RepoTarget
from adapters.git.store import GitStore
from commands.envelope import EnvelopeError, decode_transaction
from commands.ledger import BlockContext, BlockResult, GenesisAdmin, Receipt, execute_block, genesis_state
from consensus.genesis import Genesis
from consensus.interface import Finalized, FinalizedStore
from consensus.types import Block, genesis_block
from domain.events import RecordedEvent
from domain.rules import ChainRules
from domain.state import LedgerState
from projections.projector import Projector
from projections.read_models import ReadModels

log = logging.getLogger(__name__)

PUSH_KIND = "git.push_refs"
_PUSH_MARK = PUSH_KIND.encode()
_PACKS_MEMO = 10_000
#: A pending push whose pack has not arrived after this long is dropped from the mempool
#: (a client or peer named a pack nobody serves; it must not occupy the mempool forever).
PACK_WAIT_S = 120.0


class LedgerDivergence(NodeHalt):
    """This node's state no longer matches what the chain committed to."""


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
    ) -> None:
        self.chain_id = genesis.chain_id
        self.validators = tuple(v.pubkey for v in genesis.validators)
        self.genesis = genesis
        self.rules = ChainRules.from_genesis(genesis.extra)
        g = genesis_state(genesis.chain_id, genesis_admin(genesis), genesis.genesis_time_ms, self.validators)
        self.events = EventStore(data_dir=data_dir, url=event_store_url)
        self.projector = Projector(data_dir / "readmodels.duckdb")
        self.read = ReadModels(self.projector)
        if not self.events.has_height(0):
            self.events.append_block(0, g.events, (), g.app_hash)
        elif self.events.app_hash(0) != g.app_hash:
            raise LedgerDivergence("the event store belongs to a different genesis; use a fresh data dir")
        if not self.projector.has_height(0):
            self.projector.apply_block(0, g.events)
        self.state: LedgerState = g.state
        self.tip: Block = genesis_block(genesis.chain_id, genesis.genesis_time_ms)
        self._spec: dict[bytes, BlockResult] = {}
        self._lookup: Callable[[bytes], Block | None] = lambda _h: None
        self.git = git
        self.git_view = PackView(git) if git is not None else None
        #: Asks the node to fetch a pack from peers (the blob sync); idempotent.
        self.want_pack: Callable[[str], None] = lambda _digest: None
        #: Bare repositories whose writing failed here, to rebuild from the ledger.
        self.repairs = (
            RepoRepairs(git, self.git_target, lambda digest: self.want_pack(digest))
            if git is not None
            else None
        )
        #: Drops a pending transaction from the mempool (one whose pack never came).
        self.evict_tx: Callable[[bytes], object] = lambda _raw: None
        self._unready: OrderedDict[bytes, float] = OrderedDict()  # tx id -> first seen waiting
        # Finalized blocks waiting (in order) for packs before they can be applied.
        self._queue: deque[Block] = deque()
        self._queued: dict[bytes, Block] = {}
        self._packs_memo: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
        self._receipt_waiters: dict[str, list[asyncio.Future[Receipt]]] = {}
        self._height_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.stats = {"blocks_applied": 0, "events_applied": 0, "speculative_executions": 0}

    # ------------------------------------------------------------------ wiring

    def set_block_lookup(self, lookup: Callable[[bytes], Block | None]) -> None:
        """Where to find not-yet-applied blocks by hash (the replica's block cache)."""
        self._lookup = lambda h: self._queued.get(h) or lookup(h)

    @property
    def height(self) -> int:
        return self.tip.height

    def recover(self, store: FinalizedStore, progress: Callable[[int, int], None] | None = None) -> None:
        """Re-execute the finalized chain from genesis, writing whatever the stores miss."""
        last = store.last_height()
        started = time.monotonic()
        for h in range(self.tip.height + 1, last + 1):
            f = store.get(h)
            if f is None:
                raise NodeHalt(f"finalized block {h} is missing from the block store")
            self._enqueue(f.block)
            if len(self._queue) == 1:
                self.drain()
            if progress is not None and (h % 500 == 0 or h == last):
                progress(h, last)
        if self._queue:
            log.warning("ledger replay stopped at height %d: waiting for packs from peers", self.tip.height)
        elif last:
            log.info("ledger replayed %d blocks in %.1f s", last, time.monotonic() - started)

    def close(self) -> None:
        if self.git_view is not None:
            self.git_view.close()
        self.events.close()
        self.projector.close()

    # ------------------------------------------------------------------ data availability

    def packs_named(self, txs: Sequence[bytes]) -> list[str]:
        """The pack digests the pushes among `txs` name (memoized per transaction)."""
        found: list[str] = []
        for raw in txs:
            if _PUSH_MARK not in raw:
                continue  # cheap: a push's canonical JSON always contains its kind
            tid = hashlib.sha256(raw).digest()
            packs = self._packs_memo.get(tid)
            if packs is None:
                packs = _pack_of(raw)
                self._packs_memo[tid] = packs
                if len(self._packs_memo) > _PACKS_MEMO:
                    self._packs_memo.popitem(last=False)
            found.extend(packs)
        return found

    def missing_packs(self, txs: Sequence[bytes]) -> list[str]:
        if self.git is None:
            return []
        git = self.git
        return [d for d in self.packs_named(txs) if not git.has_pack(d)]

    def block_available(self, block: Block) -> bool:
        """Whether this node holds every pack the block's pushes name; asks peers for the rest."""
        missing = self.missing_packs(block.txs)
        for digest in missing:
            self.want_pack(digest)
        return not missing

    def tx_available(self, raw: bytes) -> bool:
        """Whether a leader may put this transaction in a block (its pack is here; else fetch it).

        A push still without its pack `PACK_WAIT_S` after it was first seen is evicted.
        """
        missing = self.missing_packs((raw,))
        tid = hashlib.sha256(raw).digest()
        if not missing:
            self._unready.pop(tid, None)
            return True
        now = time.monotonic()
        since = self._unready.setdefault(tid, now)
        if now - since > PACK_WAIT_S:
            del self._unready[tid]
            log.warning("dropping pending push %s: its pack never arrived", tid.hex()[:16])
            self.evict_tx(raw)
            return False
        while len(self._unready) > _PACKS_MEMO:
            self._unready.popitem(last=False)
        for digest in missing:
            self.want_pack(digest)
        return False

    def pack_ready(self, digest: str) -> None:
        """A pack arrived: apply the finalized blocks that waited for it."""
        self.drain()

    @property
    def waiting_for_packs(self) -> bool:
        return bool(self._queue)

    # ------------------------------------------------------------------ consensus application

    def _context(self, block: Block) -> BlockContext:
        return BlockContext(
            self.chain_id,
            block.height,
            block.timestamp_ms,
            self.validators,
            self.git_view,
            self.rules.at(block.height),
        )

    def next_context(self, timestamp_ms: int) -> BlockContext:
        """The context of a block on the applied tip (for prechecks)."""
        height = self.tip.height + 1
        return BlockContext(
            self.chain_id, height, timestamp_ms, self.validators, self.git_view, self.rules.at(height)
        )

    def _after(self, block: Block) -> tuple[LedgerState, bytes] | None:
        """The state and app hash after `block`, executing it (and unfinal ancestors) if needed."""
        if block.hash == self.tip.hash:
            return self.state, self.state.app_hash
        cached = self._spec.get(block.hash)
        if cached is not None:
            return cached.state, cached.app_hash
        if block.height <= self.tip.height:
            return None  # not on the finalized chain
        chain = [block]
        h = block.parent
        while h != self.tip.hash and h not in self._spec:
            b = self._lookup(h)
            if b is None or b.height <= self.tip.height:
                return None
            chain.append(b)
            h = b.parent
        if not all(self.block_available(b) for b in chain):
            return None  # consensus waits; the packs are being fetched
        if h == self.tip.hash:
            state, app_hash = self.state, self.state.app_hash
        else:
            base = self._spec[h]
            state, app_hash = base.state, base.app_hash
        for b in reversed(chain):
            result = execute_block(state, app_hash, self._context(b), b.txs)
            self.stats["speculative_executions"] += 1
            self._spec[b.hash] = result
            state, app_hash = result.state, result.app_hash
        return state, app_hash

    def app_hash_for_child(self, parent: Block) -> bytes | None:
        """The app hash a block extending `parent` must carry: the state hash after `parent`."""
        after = self._after(parent)
        return None if after is None else after[1]

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

    def on_finalized(self, f: Finalized) -> None:
        self._enqueue(f.block)
        self.drain()

    def _enqueue(self, block: Block) -> None:
        last = self._queue[-1] if self._queue else self.tip
        if block.height <= last.height:
            return
        self._queue.append(block)
        self._queued[block.hash] = block

    def drain(self) -> None:
        """Apply queued finalized blocks, in order, as far as their packs are here."""
        while self._queue:
            block = self._queue[0]
            if not self.block_available(block):
                return
            self._queue.popleft()
            self._queued.pop(block.hash, None)
            self.apply_finalized(block)

    def apply_finalized(self, block: Block) -> list[Receipt]:
        if block.height <= self.tip.height:
            return []  # already applied (idempotent replay)
        if block.parent != self.tip.hash:
            raise NodeHalt(f"finalized block {block.height} does not extend the applied tip")
        if block.app_hash != self.state.app_hash:
            raise LedgerDivergence(
                f"app hash mismatch at height {block.height}: the block commits to "
                f"{block.app_hash.hex()} but this node computed {self.state.app_hash.hex()} "
                "for its parent; this node's state has diverged and it stops applying"
            )
        result = self._spec.pop(block.hash, None)
        if result is None:
            result = execute_block(self.state, self.state.app_hash, self._context(block), block.txs)
        if self.events.has_height(block.height):
            stored = self.events.app_hash(block.height)
            if stored != result.app_hash:
                raise LedgerDivergence(
                    f"re-executing height {block.height} gave a different app hash than stored"
                )
        else:
            self.events.append_block(block.height, result.events, result.receipts, result.app_hash)
        if result.events:
            # Blocks without events change no read model; skipping them keeps idle blocks cheap
            # (the projector's tracking may lag behind; it catches up with the next events).
            self.projector.apply_block(block.height, result.events)
        self._carry_out_pushes(result)
        result.state.merge_into_parent()
        self.tip = block
        self.stats["blocks_applied"] += 1
        self.stats["events_applied"] += len(result.events)
        # Competing blocks at or below this height can never be final now.
        for h in [h for h, r in self._spec.items() if r.height <= block.height]:
            del self._spec[h]
        self._notify(result.receipts)
        return list(result.receipts)

    def _carry_out_pushes(self, result: BlockResult) -> None:
        """Make the block's accepted pushes visible in the bare repositories: objects, then refs.

        Idempotent (a replay after a crash redoes it), and done before anyone waiting for
        the receipt is told, so an acknowledged push is readable here. The repositories
        are derived state: a failure to write one (a full disk, a damaged directory) is
        this node's alone, so it marks the repository for repair and never stops the
        chain or changes what was recorded.
        """
        if self.git is None or self.repairs is None:
            return
        for event in result.events:
            if event.type != "RefsUpdated":
                continue
            repo_id, digest = _push_effects(event)
            if self.repairs.needs_repair(repo_id):
                self.repairs.mark(repo_id, "a push was applied while it waits for repair")
                continue
            repo = result.state.repo(repo_id)
            try:
                if digest:
                    self.git.import_pack(repo_id, digest)
                self.git.write_refs(repo_id, dict(result.state.refs(repo_id)))
                if repo is not None:
                    self.git.set_head(repo_id, repo.default_branch)
            except Exception as exc:  # any local fault: the ledger's outcome stands
                self.repairs.mark(repo_id, f"writing the push at height {result.height} failed: {exc!r}")

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

    # ------------------------------------------------------------------ waiting for results

    def _notify(self, receipts: tuple[Receipt, ...]) -> None:
        for r in receipts:
            for fut in self._receipt_waiters.pop(r.tx_id, ()):
                if not fut.done():
                    fut.set_result(r)
        if self._height_waiters:
            keep = []
            for target, waiter in self._height_waiters:
                if target <= self.tip.height:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    keep.append((target, waiter))
            self._height_waiters = keep

    def receipt(self, tx_id_hex: str) -> Receipt | None:
        raw = self.events.receipt(tx_id_hex)
        return None if raw is None else Receipt.from_json(dict(raw))

    async def wait_receipt(self, tx_id_hex: str, timeout_s: float) -> Receipt | None:
        """The receipt once the transaction is applied on this node; None on timeout."""
        found = self.receipt(tx_id_hex)
        if found is not None:
            return found
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._receipt_waiters.setdefault(tx_id_hex, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._receipt_waiters.get(tx_id_hex)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._receipt_waiters[tx_id_hex]

    async def wait_height(self, height: int, timeout_s: float) -> bool:
        """Wait until this node has applied `height`; False on timeout."""
        if height <= self.tip.height:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._height_waiters.append((height, fut))
        try:
            await asyncio.wait_for(fut, timeout_s)
            return True
        except TimeoutError:
            return False
        finally:
            self._height_waiters = [(h, f) for h, f in self._height_waiters if f is not fut]

    def status(self) -> dict[str, Any]:
        return {
            "height": self.tip.height,
            "app_hash": self.state.app_hash.hex(),
            "speculative_blocks": len(self._spec),
            "blocks_waiting_for_packs": len(self._queue),
            **self.stats,
        }


def _pack_of(raw: bytes) -> tuple[str, ...]:
    """The pack a push transaction names (none for other transactions or malformed ones)."""
    try:
        tx = decode_transaction(raw)
    except EnvelopeError:
        return ()
    if tx.kind != PUSH_KIND:
        return ()
    digest = tx.payload.get("pack_digest")
    if not isinstance(digest, str) or len(digest) != 64 or digest.strip("0123456789abcdef"):
        return ()  # the handler refuses it; nothing to fetch
    return (digest,)


def _push_effects(event: RecordedEvent) -> tuple[str, str]:
    """The repository a push changed and the pack it brought ("" if none)."""
    data = event.data
    return str(data["repo_id"]), str(data.get("pack_digest") or "")
