"""Runs the pure ledger on a node: speculative execution for consensus, and applying final blocks.

Consensus asks for the app hash a child of some block must carry; that is the state
hash after the block, which may not be final yet, so blocks are executed on forks of
the finalized state and the results cached by block hash. When a block is finalized
its cached result (or a fresh execution) is written to the event store (events,
receipts and the height in one transaction) and the DuckDB projections, and the
fork is merged into the finalized state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.consensus_host import NodeHalt
from adapters.event_store import EventStore
from commands.envelope import EnvelopeError, decode_transaction
from commands.ledger import BlockContext, BlockResult, GenesisAdmin, Receipt, execute_block, genesis_state
from consensus.genesis import Genesis
from consensus.interface import Finalized, FinalizedStore
from consensus.types import Block, genesis_block
from domain.state import LedgerState
from projections.projector import Projector
from projections.read_models import ReadModels

log = logging.getLogger(__name__)


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
    def __init__(self, *, genesis: Genesis, data_dir: Path, event_store_url: str | None = None) -> None:
        self.chain_id = genesis.chain_id
        self.validators = tuple(v.pubkey for v in genesis.validators)
        self.genesis = genesis
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
        self._receipt_waiters: dict[str, list[asyncio.Future[Receipt]]] = {}
        self._height_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self.stats = {"blocks_applied": 0, "events_applied": 0, "speculative_executions": 0}

    # ------------------------------------------------------------------ wiring

    def set_block_lookup(self, lookup: Callable[[bytes], Block | None]) -> None:
        """Where to find not-yet-final blocks by hash (the replica's block cache)."""
        self._lookup = lookup

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
            self.apply_finalized(f.block)
            if progress is not None and (h % 500 == 0 or h == last):
                progress(h, last)
        if last:
            log.info("ledger replayed %d blocks in %.1f s", last, time.monotonic() - started)

    def close(self) -> None:
        self.events.close()
        self.projector.close()

    # ------------------------------------------------------------------ consensus application

    def _context(self, block: Block) -> BlockContext:
        return BlockContext(self.chain_id, block.height, block.timestamp_ms, self.validators)

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
        self.apply_finalized(f.block)

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
        result.state.merge_into_parent()
        self.tip = block
        self.stats["blocks_applied"] += 1
        self.stats["events_applied"] += len(result.events)
        # Competing blocks at or below this height can never be final now.
        for h in [h for h, r in self._spec.items() if r.height <= block.height]:
            del self._spec[h]
        self._notify(result.receipts)
        return list(result.receipts)

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
            **self.stats,
        }
