"""Runs the pure Simplex replica inside an asyncio node.

This is the replica's host: it feeds it P2P frames and timer firings, and carries
out its output in the order safety requires (fsync votes to the WAL, then send;
persist finalized blocks, then tell waiters). It also owns the mempool, the
transaction gossip, and the per-node counters the metrics endpoint exposes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.p2p import P2PNetwork, PeerAddress
from adapters.vote_outbox import VoteOutbox
from consensus.codec import DecodeError
from consensus.crypto import Signer
from consensus.genesis import Genesis
from consensus.interface import Finalized, Output, ReplicaConfig, Timer, Verdict
from consensus.mempool import AddResult, Mempool, MempoolApp, chain_app_hash
from consensus.messages import (
    BlobChunk,
    BlobOffer,
    BlobRequest,
    Message,
    TxGossip,
    decode_message,
    encode_message,
)
from consensus.replica import Replica
from consensus.store import BlockStore
from consensus.types import Block, Limits, genesis_block, tx_id
from consensus.wal import VoteLog

log = logging.getLogger(__name__)

# Recently finalized transaction ids kept for answering "where did my tx land".
RECENT_TX_INDEX = 200_000
# Gossip batches are flushed once per event-loop turn, capped in size.
GOSSIP_BATCH_BYTES = 1024 * 1024
# The WAL keeps votes for this many views behind the finalized view.
WAL_KEEP_VIEWS = 1_000


class NodeHalt(RuntimeError):
    """A condition under which the node must stop rather than go on (e.g. its state diverged)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class TxLocation:
    height: int
    block_hash: bytes


@dataclass(frozen=True)
class HostConfig:
    replica: ReplicaConfig = ReplicaConfig()
    limits: Limits = Limits()
    mempool_max_txs: int = 100_000
    mempool_max_bytes: int = 128 * 1024 * 1024
    # An idle leader waits this long for transactions before proposing an empty block,
    # so an idle chain ticks a few times a second instead of spinning.
    idle_block_interval_ms: int = 250
    max_frame_bytes: int = 16 * 1024 * 1024


class _IdleThrottledApp:
    """Wraps the mempool application: empty blocks only every `idle_ms`."""

    def __init__(self, inner: MempoolApp, idle_ms: int) -> None:
        self.inner = inner
        self.idle_ms = idle_ms

    def build_payload(
        self, parent: Block, pending: tuple[Block, ...], now: int
    ) -> tuple[tuple[bytes, ...], bytes] | None:
        payload = self.inner.build_payload(parent, pending, now)
        if payload is not None and not payload[0] and now - parent.timestamp_ms < self.idle_ms:
            return None
        return payload

    def verify_block(self, block: Block, parent: Block) -> Verdict:
        return self.inner.verify_block(block, parent)


class ConsensusHost:
    def __init__(
        self,
        *,
        genesis: Genesis,
        seed: bytes,
        data_dir: Path,
        p2p_host: str,
        p2p_port: int,
        config: HostConfig = HostConfig(),
        on_finalized: Callable[[Finalized], None] | None = None,
        app_hash: Callable[[Block], bytes | None] | None = None,
        on_halt: Callable[[NodeHalt], None] | None = None,
        admit: Callable[[bytes], str | None] | None = None,
        available: Callable[[Block], bool] | None = None,
        tx_ready: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.genesis = genesis
        self.validators = genesis.validator_set()
        self.signer = Signer(seed, self.validators)
        self.index = self.signer.index
        self.config = config
        self.genesis_block = genesis_block(genesis.chain_id, genesis.genesis_time_ms)
        cdir = data_dir / "consensus"
        self.wal = VoteLog(cdir / "votes.wal")
        self.store = BlockStore(cdir / "blocks.sqlite")
        self.mempool = Mempool(
            max_txs=config.mempool_max_txs,
            max_bytes=config.mempool_max_bytes,
            max_tx_bytes=config.limits.max_tx_bytes,
        )
        self.app = MempoolApp(
            self.mempool,
            config.limits,
            app_hash if app_hash is not None else chain_app_hash,
            available=available,
            tx_ready=tx_ready,
        )
        self.replica = Replica(
            validators=self.validators,
            signer=self.signer,
            app=_IdleThrottledApp(self.app, config.idle_block_interval_ms),
            store=self.store,
            genesis=self.genesis_block,
            config=config.replica,
            limits=config.limits,
            recovered_votes=self.wal.votes,
            recovered_blocks=self.store.voted_blocks(),
        )
        peers = [
            PeerAddress(i, v.host, v.p2p_port, v.pubkey)
            for i, v in enumerate(genesis.validators)
            if i != self.index
        ]
        self.p2p = P2PNetwork(
            chain_id=genesis.chain_id,
            seed=seed,
            my_index=self.index,
            peers=peers,
            listen_host=p2p_host,
            listen_port=p2p_port,
            on_frame=self._on_frame,
            max_frame_bytes=config.max_frame_bytes,
        )
        #: Our votes go to the write-ahead log (fsync off the event loop) before messages leave.
        self.outbox = VoteOutbox(
            self.wal, self._send, lambda exc: self._halt(NodeHalt(f"writing the vote log failed: {exc}"))
        )
        self.dropped: Counter[str] = Counter()
        #: Receives blob (pack) messages: the node's `BlobSync.on_message`.
        self.blob_handler: Callable[[int, BlobOffer | BlobRequest | BlobChunk], None] | None = None
        self.finality_observer: Callable[[float], None] | None = None
        self.block_observer: Callable[[float], None] | None = None
        self._external_on_finalized = on_finalized
        self._on_halt = on_halt
        self._admit = admit
        self.halted: NodeHalt | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[bytes, list[asyncio.Future[TxLocation]]] = {}
        self._submitted_at: dict[bytes, float] = {}
        self._recent: OrderedDict[bytes, TxLocation] = OrderedDict()
        self._gossip: list[bytes] = []
        self._gossip_bytes = 0
        self._gossip_scheduled = False
        self._ready_scheduled = False
        self._timers: set[asyncio.TimerHandle] = set()
        self._fired = 0
        self._stopped = False
        self.started_at = time.monotonic()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.p2p.start()
        self._process(self.replica.start(now_ms()))

    async def stop(self) -> None:
        self._stopped = True
        for h in self._timers:
            h.cancel()
        self._timers.clear()
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.cancel()
        self._waiters.clear()
        await self.outbox.close()
        await self.p2p.stop()
        self.wal.close()
        self.store.close()

    # ------------------------------------------------------------------ replica I/O

    def _on_frame(self, peer: int, frame: bytes) -> None:
        if self._stopped:
            return
        try:
            msg = decode_message(frame)
        except DecodeError:
            self.dropped["malformed_message"] += 1
            return
        if isinstance(msg, TxGossip):
            self._on_gossip(msg)
            return
        if isinstance(msg, BlobOffer | BlobRequest | BlobChunk):
            if self.blob_handler is None:
                self.dropped["unexpected_blob_message"] += 1
            else:
                self.blob_handler(peer, msg)
            return
        self._process(self.replica.on_message(peer, msg, now_ms()))

    def _on_timer(self, timer: Timer) -> None:
        if self._stopped:
            return
        self._process(self.replica.on_timer(timer, now_ms()))

    def _process(self, out: Output) -> None:
        try:
            self._carry_out(out)
        except NodeHalt as halt:
            self._halt(halt)

    def halt(self, halt: NodeHalt) -> None:
        """Stop the node because something outside consensus (e.g. the ledger) cannot go on."""
        self._halt(halt)

    def app_ready(self) -> None:
        """Data the application waited for arrived (e.g. a pack): re-check proposals and votes."""
        self._schedule_app_ready()

    def _halt(self, halt: NodeHalt) -> None:
        """Stop taking part in consensus at once and tell the node process, loudly."""
        if self.halted is not None:
            return
        self.halted = halt
        self._stopped = True
        self.outbox.abort()
        for h in self._timers:
            h.cancel()
        log.critical("node halted: %s", halt)
        if self._on_halt is not None:
            self._on_halt(halt)

    def _carry_out(self, out: Output) -> None:
        if self._stopped:
            return
        # Safety: our votes are durable before any message that carries them leaves (the
        # outbox fsyncs them off the loop), and so are the blocks they vote for (liveness
        # after every validator crashed at once).
        if out.blocks:
            self.store.save_voted(out.blocks)
        self.outbox.submit(out.wal, out.messages)
        assert self._loop is not None
        for t in out.timers:
            delay = max(0.0, (t.deadline_ms - now_ms()) / 1000)
            handle = self._loop.call_later(delay, self._fire, t)
            self._timers.add(handle)
        if out.finalized:
            self._apply_finalized(out.finalized)

    def _fire(self, timer: Timer) -> None:
        self._fired += 1
        if self._fired % 512 == 0 and self._loop is not None:
            now = self._loop.time()
            self._timers = {h for h in self._timers if h.when() > now and not h.cancelled()}
        self._on_timer(timer)

    def send_to(self, peer: int, msg: Message) -> bool:
        """Queue one message for one peer (False: not connected or queue full)."""
        return self.p2p.send(peer, encode_message(msg))

    def _send(self, dest: int | None, msg: Message) -> None:
        frame = encode_message(msg)
        if dest is None:
            self.p2p.broadcast(frame)
        else:
            self.p2p.send(dest, frame)

    def _apply_finalized(self, items: list[Finalized]) -> None:
        self.store.append(items)
        t = now_ms()
        mono = time.monotonic()
        for f in items:
            block = f.block
            self.app.on_finalized(block)
            if self.block_observer is not None:
                self.block_observer(max(0, t - block.timestamp_ms) / 1000)
            loc = TxLocation(block.height, block.hash)
            for tx in block.txs:
                tid = tx_id(tx)
                self._recent[tid] = loc
                started = self._submitted_at.pop(tid, None)
                if started is not None and self.finality_observer is not None:
                    self.finality_observer(mono - started)
                for fut in self._waiters.pop(tid, ()):
                    if not fut.done():
                        fut.set_result(loc)
            if self._external_on_finalized is not None:
                try:
                    self._external_on_finalized(f)
                except NodeHalt:
                    raise
                except Exception as exc:
                    # The application could not apply a final block: going on would leave it
                    # behind the chain for good, so stop loudly instead.
                    log.exception("applying finalized block %d failed", block.height)
                    raise NodeHalt(
                        f"applying finalized block {block.height} failed: {type(exc).__name__}: {exc}"
                    ) from exc
        while len(self._recent) > RECENT_TX_INDEX:
            self._recent.popitem(last=False)
        tip = self.replica.finalized_tip
        self.store.prune_voted(tip.height)
        if tip.height % 500 == 0:
            self.outbox.compact(min_view=tip.view - WAL_KEEP_VIEWS)

    # ------------------------------------------------------------------ transactions

    def _on_gossip(self, msg: TxGossip) -> None:
        added = False
        for tx in msg.txs:
            if self._admit is not None and self._admit(tx) is not None:
                self.dropped["inadmissible_tx"] += 1
                continue
            result, _ = self.mempool.add(tx)
            if result == AddResult.TOO_LARGE:
                self.dropped["oversized_tx"] += 1
            added |= result == AddResult.ADDED
        if added:
            self._schedule_app_ready()

    def submit(self, tx: bytes) -> tuple[AddResult, bytes]:
        """Add a client transaction to the mempool and gossip it to the other validators."""
        result, tid = self.mempool.add(tx)
        if result == AddResult.ADDED:
            self._submitted_at[tid] = time.monotonic()
            if len(self._submitted_at) > self.config.mempool_max_txs:
                self._submitted_at.pop(next(iter(self._submitted_at)))
            self._gossip.append(tx)
            self._gossip_bytes += len(tx)
            if self._gossip_bytes >= GOSSIP_BATCH_BYTES:
                self._flush_gossip()
            elif not self._gossip_scheduled and self._loop is not None:
                self._gossip_scheduled = True
                self._loop.call_soon(self._flush_gossip)
            self._schedule_app_ready()
        return result, tid

    def _flush_gossip(self) -> None:
        self._gossip_scheduled = False
        if self._gossip and not self._stopped:
            self.p2p.broadcast(encode_message(TxGossip(tuple(self._gossip))))
        self._gossip = []
        self._gossip_bytes = 0

    def _schedule_app_ready(self) -> None:
        """A leader idling on an empty mempool proposes as soon as transactions arrive."""
        if self._ready_scheduled or self._loop is None:
            return
        self._ready_scheduled = True

        def ready() -> None:
            self._ready_scheduled = False
            if not self._stopped:
                self._process(self.replica.on_app_ready(now_ms()))

        self._loop.call_soon(ready)

    def location(self, tid: bytes) -> TxLocation | None:
        return self._recent.get(tid)

    async def wait_finalized(self, tid: bytes, timeout_s: float) -> TxLocation | None:
        """The block a transaction was finalized in, or None if it isn't within the timeout."""
        loc = self._recent.get(tid)
        if loc is not None:
            return loc
        assert self._loop is not None
        fut: asyncio.Future[TxLocation] = self._loop.create_future()
        self._waiters.setdefault(tid, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        finally:
            futs = self._waiters.get(tid)
            if futs is not None and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self._waiters[tid]

    # ------------------------------------------------------------------ queries

    @property
    def peers_connected(self) -> int:
        return len(self.p2p.connected())

    def quorum_reachable(self) -> bool:
        return self.peers_connected + 1 >= self.validators.quorum

    def caught_up(self) -> bool:
        best = self.replica.best_peer_height()
        return self.replica.finalized_height + 1 >= best

    def block(self, height: int) -> Finalized | Block | None:
        """The finalized block at `height` with its proof; the bare genesis block at 0."""
        if height == 0:
            return self.genesis_block
        return self.store.get(height)

    def all_dropped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        total.update(self.replica.dropped)
        total.update(self.dropped)
        total.update({f"p2p_{k}": v for k, v in self.p2p.dropped.items()})
        return total
