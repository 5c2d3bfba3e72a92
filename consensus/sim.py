"""A deterministic network simulator for the Simplex replica.

Everything is driven by one `random.Random(seed)` and a virtual clock in
milliseconds, so a run is a pure function of `(seed, n, scenario)` and any failure
replays exactly:

    .venv/bin/python -m consensus.sim --seed 17 --n 4 --scenario crash -v [--trace]
    .venv/bin/python -m consensus.sim --seed 0 --seeds 1000 --n 7 --scenario random

What it models:

- an in-memory network where every message goes through the wire codec
  (`encode_message` / `decode_message`), with per-message latency drawn from a range
  (which also reorders), message loss, duplication and partitions that heal;
- crash and restart: a crashed node loses its in-memory `Replica`, mempool, timers and
  in-flight messages, but keeps its write-ahead log of votes and its finalized store;
  it restarts as a new `Replica` built with `recovered_votes` and the same store. A
  crash can also hit "mid-output": after the votes are logged, before they are sent;
- Byzantine validators (at most f) that run a real replica whose output is perturbed,
  plus crafted messages signed with their own key: equivocating leaders, double
  votes, invalid proposals, forged certificates, tampered sync and block responses,
  garbage bytes and other invalid messages, and withheld messages;
- clock skew between nodes (well inside `Limits.max_clock_drift_ms`);
- transactions injected into every live node's `MempoolApp` over time.

What it checks, after every event (a failure stops the run):

- safety: no two honest nodes finalize different blocks at the same height; each
  node's finalized chain is gap-free and linked by parent hash; every finalized block
  obeys the protocol rules (leader, view, timestamp, app hash, limits, no repeated tx)
  and carries a valid finalization certificate; no transaction is finalized twice;
- votes: an honest node (across all of its lifetimes) never signs two notarize or two
  finalize votes for different blocks in one view, never signs both finalize and
  nullify in one view, and never sends a vote it has not logged to its WAL first;
- no progress while a partition leaves no group with a quorum;

and at the end of the run:

- liveness: once the network has healed (no partition, no loss, every crashed node
  restarted but at most f faulty in all), every live honest node's finalized
  height reaches the highest height at heal time plus `liveness_blocks`;
- evidence: when a Byzantine validator's conflicting votes reached an honest node,
  some honest node recorded evidence against it.

Tests: `tests/test_simulator.py` runs 500 seeds by default (350 with n=4, 150 with
n=7, spread over the scenario kinds). Set `STELE_SIM_SEEDS=10000` to run that many
seeds instead, and `STELE_SIM_SEED_BASE=100000` to start from another seed.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import partial

from nacl.signing import SigningKey

from consensus.codec import DecodeError
from consensus.crypto import Signer, ValidatorSet, Verifier
from consensus.interface import Finalized, Output, ReplicaConfig, Timer
from consensus.mempool import Mempool, MempoolApp, chain_app_hash
from consensus.messages import (
    MAX_CERT_VIEWS_PER_REQUEST,
    BlockRequest,
    BlockResponse,
    CertificateMsg,
    CertificateRequest,
    Message,
    Proposal,
    Status,
    SyncRequest,
    SyncResponse,
    TxGossip,
    VoteMsg,
    decode_message,
    encode_message,
)
from consensus.replica import Replica
from consensus.types import (
    ZERO_HASH,
    Block,
    Certificate,
    Limits,
    Vote,
    VoteKind,
    genesis_block,
    sha256,
    tx_id,
)

CHAIN_ID = "stele-sim"
# Virtual time 0 is this wall-clock instant; node clocks are T0 + t + skew.
T0_MS = 1_700_000_000_000
GENESIS = genesis_block(CHAIN_ID, T0_MS - 1_000)
# Small limits so that oversized blocks are cheap to build.
SIM_LIMITS = Limits(max_tx_bytes=2_048, max_block_txs=32, max_block_bytes=16 * 1024, max_clock_drift_ms=2_000)
# Votes this far from a node's view are not expected to produce evidence (the replica may drop them).
_EVIDENCE_WINDOW = 32

SCENARIOS: tuple[str, ...] = (
    "honest",
    "lossy",
    "partition",
    "crash",
    "equivocate",
    "double_vote",
    "invalid",
    "withhold",
    "mixed",
)


# ---------------------------------------------------------------------------- configuration


class ByzKind(Enum):
    EQUIVOCATE = "equivocate"  # as leader: two conflicting proposals to two halves of the peers
    DOUBLE_VOTE = "double_vote"  # notarize/finalize two blocks in one view; finalize + nullify
    INVALID = "invalid"  # invalid proposals, forged certificates, bad votes, garbage bytes
    WITHHOLD = "withhold"  # sends nothing, or only to some peers, or no votes


@dataclass(frozen=True)
class Byzantine:
    node: int
    kind: ByzKind
    # WITHHOLD: the peers it still sends to (empty: silent). Ignored if votes_only.
    reach: tuple[int, ...] = ()
    # WITHHOLD: send everything except votes and certificates.
    votes_only: bool = False


@dataclass(frozen=True)
class Partition:
    start_ms: int
    end_ms: int
    groups: tuple[tuple[int, ...], ...]  # must cover every node


@dataclass(frozen=True)
class Crash:
    node: int
    at_ms: int
    restart_ms: int | None  # None: stays down
    mid_output: bool = False  # crash right after logging votes, before sending them


@dataclass(frozen=True)
class ScenarioConfig:
    name: str = "custom"
    duration_ms: int = 15_000
    # Faults (loss, partitions, crashes) end by here; liveness is measured from here.
    heal_ms: int = 0
    latency_ms: tuple[int, int] = (5, 60)
    loss: float = 0.0
    heal_loss: float = 0.0
    duplicate: float = 0.0
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    byzantine: tuple[Byzantine, ...] = ()
    clock_skew_ms: int = 0
    tx_interval_ms: tuple[int, int] = (150, 500)
    # Liveness: blocks every live honest node must gain over the height at heal (0: no check).
    liveness_blocks: int = 3
    # While a partition leaves no group with a quorum, the highest finalized height may
    # grow by at most this much (blocks already notarized when the partition started).
    no_progress_slack: int = 2
    check_evidence: bool = True
    # Every transaction injected before the last 3 s must be finalized.
    check_tx_inclusion: bool = False
    start_jitter_ms: int = 50
    replica_config: ReplicaConfig = field(default_factory=ReplicaConfig)
    limits: Limits = SIM_LIMITS


# ---------------------------------------------------------------------------- results


@dataclass
class SimResult:
    seed: int
    n: int
    scenario: ScenarioConfig
    heights: dict[int, int] = field(default_factory=dict)  # node -> finalized height (honest, live)
    views: dict[int, int] = field(default_factory=dict)
    byzantine: dict[int, str] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)  # honest replicas' drop reasons, all lifetimes
    stats: Counter[str] = field(default_factory=Counter)
    evidence: dict[int, int] = field(default_factory=dict)  # honest node -> evidence pairs recorded
    evidence_expected: tuple[int, ...] = ()  # Byzantine signers whose conflicting votes reached a node
    height_at_heal: int = 0
    failures: list[str] = field(default_factory=list)
    virtual_ms: int = 0
    wall_s: float = 0.0
    nodes: list[SimNode] = field(default_factory=list, repr=False)  # for inspection by tests

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def max_height(self) -> int:
        return max(self.heights.values(), default=0)

    def summary(self) -> str:
        sc = self.scenario
        lines = [
            f"seed={self.seed} n={self.n} scenario={sc.name} ok={self.ok} "
            f"virtual={self.virtual_ms}ms wall={self.wall_s:.2f}s",
            f"  heights={self.heights} views={self.views} height_at_heal={self.height_at_heal}",
            f"  byzantine={self.byzantine} evidence={self.evidence}",
            f"  evidence expected against={self.evidence_expected}",
            f"  stats={dict(sorted(self.stats.items()))}",
            f"  dropped={dict(sorted(self.dropped.items()))}",
        ]
        if sc.name in SCENARIOS:
            lines.append(
                f"  reproduce: .venv/bin/python -m consensus.sim --seed {self.seed} --n {self.n} "
                f"--scenario {sc.name} -v  (add --trace for every message)"
            )
        lines += [f"  FAILURE: {f}" for f in self.failures]
        return "\n".join(lines)


class SimFailure(AssertionError):
    """A safety or vote-discipline violation; stops the run."""


# ---------------------------------------------------------------------------- nodes and stores


class MemoryStore:
    """A `FinalizedStore` in memory; survives its node's crashes like a disk would."""

    def __init__(self) -> None:
        self.items: list[Finalized] = []

    def last_height(self) -> int:
        return len(self.items)

    def get(self, height: int) -> Finalized | None:
        if 1 <= height <= len(self.items):
            return self.items[height - 1]
        return None

    def tip(self) -> Block:
        return self.items[-1].block if self.items else GENESIS


@dataclass
class _Signed:
    notarize: set[bytes] = field(default_factory=set)
    finalize: set[bytes] = field(default_factory=set)
    nullify: bool = False


@dataclass
class SimNode:
    index: int
    signer: Signer
    skew: int
    byz: Byzantine | None = None
    store: MemoryStore = field(default_factory=MemoryStore)
    wal: list[Vote] = field(default_factory=list)  # persisted: survives crashes
    wal_set: set[Vote] = field(default_factory=set)
    voted_blocks: dict[bytes, Block] = field(default_factory=dict)  # persisted with the WAL
    replica: Replica | None = None
    app: MempoolApp | None = None
    up: bool = False
    epoch: int = 0  # incarnation; timers and in-flight messages of an old one are discarded
    crash_pending: bool = False
    permanently_down: bool = False
    final_hashes: dict[bytes, int] = field(default_factory=dict)  # finalized hash -> height
    signed: dict[int, _Signed] = field(default_factory=dict)  # all lifetimes
    evidence: list[tuple[Vote, Vote]] = field(default_factory=list)  # all lifetimes
    dropped: Counter[str] = field(default_factory=Counter)  # all lifetimes
    # (byzantine signer, view, kind) -> block hashes received in this lifetime
    received: dict[tuple[int, int, VoteKind], set[bytes]] = field(default_factory=dict)
    fake_blocks: dict[bytes, Block] = field(default_factory=dict)  # Byzantine: blocks it made up

    @property
    def honest(self) -> bool:
        return self.byz is None


_KEY_CACHE: dict[int, tuple[ValidatorSet, list[bytes]]] = {}


def make_keys(n: int) -> tuple[ValidatorSet, list[bytes]]:
    """n deterministic validator seeds, returned in validator-index order."""
    cached = _KEY_CACHE.get(n)
    if cached is not None:
        return cached
    seeds = [sha256(f"sim-{i}".encode()) for i in range(n)]
    by_pub = sorted((bytes(SigningKey(s).verify_key), s) for s in seeds)
    vset = ValidatorSet(CHAIN_ID, tuple(p for p, _ in by_pub))
    result = (vset, [s for _, s in by_pub])
    _KEY_CACHE[n] = result
    return result


# ---------------------------------------------------------------------------- the simulator


class Simulator:
    def __init__(
        self, seed: int, n: int, cfg: ScenarioConfig, trace: Callable[[str], None] | None = None
    ) -> None:
        self.seed = seed
        self.trace = trace
        self.n = n
        self.cfg = cfg
        self.rng = random.Random(seed)
        self.vset, seeds = make_keys(n)
        self.f = self.vset.f
        if len(cfg.byzantine) > self.f:
            raise ValueError(f"{len(cfg.byzantine)} Byzantine validators but f={self.f}")
        self.verifier = Verifier(self.vset, cache_size=200_000)
        byz = {b.node: b for b in cfg.byzantine}
        self.nodes = [
            SimNode(
                i,
                Signer(seeds[i], self.vset),
                self.rng.randint(-cfg.clock_skew_ms, cfg.clock_skew_ms),
                byz.get(i),
            )
            for i in range(n)
        ]
        self.now = 0
        self._heap: list[tuple[int, int, Callable[[], None]]] = []
        self._seq = 0
        self.stats: Counter[str] = Counter()
        self.failures: list[str] = []
        self.final_hash: dict[int, bytes] = {}  # height -> hash, over honest nodes
        self.tx_height: dict[bytes, int] = {}  # tx id -> height finalized at (honest)
        self.injected: dict[bytes, int] = {}  # tx id -> time injected
        self.blocks: dict[bytes, Block] = {GENESIS.hash: GENESIS}  # every block proposed, by hash
        self.evidence_expected: set[int] = set()
        self.height_at_heal = 0
        self._tx_counter = 0
        self._healed = cfg.heal_ms <= 0
        self._partition_floor: dict[int, int] = {}  # partition index -> max height at start

    # ------------------------------------------------------------------ scheduling

    def at(self, t: int, fn: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, fn))

    def local(self, node: SimNode) -> int:
        return T0_MS + self.now + node.skew

    def fail(self, msg: str) -> None:
        raise SimFailure(f"t={self.now}ms: {msg}")

    # ------------------------------------------------------------------ running

    def run(self) -> SimResult:
        started = time.perf_counter()
        cfg = self.cfg
        for node in self.nodes:
            self.at(self.rng.randint(0, cfg.start_jitter_ms), partial(self._start, node))
        for c in cfg.crashes:
            self.at(c.at_ms, partial(self._crash_event, c))
            if c.restart_ms is not None:
                self.at(c.restart_ms, partial(self._restart, self.nodes[c.node]))
        for i, p in enumerate(cfg.partitions):
            self.at(p.start_ms, partial(self._partition_start, i))
            self.at(p.end_ms, partial(self._partition_end, i))
        if cfg.heal_ms > 0:
            self.at(cfg.heal_ms, self._heal)
        self.at(self.rng.randint(*cfg.tx_interval_ms), self._inject_txs)
        for b in cfg.byzantine:
            if b.kind is ByzKind.INVALID:
                self.at(self.rng.randint(100, 800), partial(self._byz_inject, self.nodes[b.node]))
        try:
            while self._heap:
                t, _, fn = heapq.heappop(self._heap)
                if t > cfg.duration_ms:
                    break
                self.now = t
                fn()
                self.stats["events"] += 1
            self.now = cfg.duration_ms
            self._final_checks()
        except SimFailure as e:
            self.failures.append(str(e))
        result = self._result()
        result.wall_s = time.perf_counter() - started
        return result

    def _result(self) -> SimResult:
        res = SimResult(self.seed, self.n, self.cfg)
        res.virtual_ms = self.now
        res.stats = self.stats
        res.failures = self.failures
        res.height_at_heal = self.height_at_heal
        res.evidence_expected = tuple(sorted(self.evidence_expected))
        res.nodes = self.nodes
        for node in self.nodes:
            if node.byz is not None:
                res.byzantine[node.index] = node.byz.kind.value
                continue
            self._archive(node)
            res.dropped.update(node.dropped)
            res.evidence[node.index] = len(node.evidence)
            if node.up:
                res.heights[node.index] = node.store.last_height()
                if node.replica is not None:
                    res.views[node.index] = node.replica.view
        return res

    def _archive(self, node: SimNode) -> None:
        """Move what the live replica has gathered into the node's all-lifetimes record."""
        r = node.replica
        if r is None:
            return
        node.evidence.extend(r.evidence)
        node.dropped.update(r.dropped)
        r.evidence = []
        r.dropped.clear()

    # ------------------------------------------------------------------ node life cycle

    def _new_replica(self, node: SimNode) -> None:
        cfg = self.cfg
        node.app = MempoolApp(Mempool(max_tx_bytes=cfg.limits.max_tx_bytes), cfg.limits)
        node.replica = Replica(
            validators=self.vset,
            signer=node.signer,
            app=node.app,
            store=node.store,
            genesis=GENESIS,
            config=cfg.replica_config,
            limits=cfg.limits,
            recovered_votes=list(node.wal),
            recovered_blocks=list(node.voted_blocks.values()),
        )
        if node.replica.finalized_height != node.store.last_height():
            self.fail(
                f"node {node.index} restarted at finalized height {node.replica.finalized_height} "
                f"but its store holds {node.store.last_height()}"
            )
        node.up = True
        node.crash_pending = False
        node.received.clear()

    def _start(self, node: SimNode) -> None:
        if node.up or node.permanently_down:
            return
        self._new_replica(node)
        self._call(node, lambda r: r.start(self.local(node)), "start")

    def _crash_event(self, c: Crash) -> None:
        node = self.nodes[c.node]
        if c.restart_ms is None:
            node.permanently_down = True
        if not node.up:
            return
        if c.mid_output:
            node.crash_pending = True
            # Crash anyway if no vote is logged soon.
            self.at(self.now + 2_000, lambda: self._crash(node) if node.crash_pending else None)
        else:
            self._crash(node)

    def _crash(self, node: SimNode) -> None:
        if not node.up:
            return
        self._archive(node)
        node.up = False
        node.crash_pending = False
        node.replica = None
        node.app = None
        node.epoch += 1
        self.stats["crashes"] += 1

    def _restart(self, node: SimNode) -> None:
        if node.permanently_down:
            return
        if node.up:
            # The mid-output crash never triggered and the node is still up: crash now, restart.
            self._crash(node)
        self.stats["restarts"] += 1
        self._new_replica(node)
        self._call(node, lambda r: r.start(self.local(node)), "restart")

    def _call(self, node: SimNode, fn: Callable[[Replica], Output], what: str) -> None:
        r = node.replica
        assert r is not None
        try:
            out = fn(r)
        except SimFailure:
            raise
        except Exception as e:  # a replica must never crash on any input
            import traceback

            tb = "".join(traceback.format_exception(e)[-6:])
            self.fail(f"node {node.index} replica raised on {what}: {e!r}\n{tb}")
        self._handle_output(node, out)

    # ------------------------------------------------------------------ network

    def _partition_groups(self) -> dict[int, int] | None:
        for p in self.cfg.partitions:
            if p.start_ms <= self.now < p.end_ms:
                return {m: gi for gi, g in enumerate(p.groups) for m in g}
        return None

    def _cut(self, a: int, b: int) -> bool:
        groups = self._partition_groups()
        return groups is not None and groups.get(a, -1) != groups.get(b, -2)

    def _loss(self) -> float:
        return self.cfg.loss if not self._healed else self.cfg.heal_loss

    def send(self, src: int, dests: Sequence[int], msg: Message) -> None:
        if isinstance(msg, Proposal):
            self.blocks.setdefault(msg.block.hash, msg.block)
        self.send_raw(src, dests, encode_message(msg))

    def send_raw(self, src: int, dests: Sequence[int], data: bytes) -> None:
        lo, hi = self.cfg.latency_ms
        for d in dests:
            if d == src:
                continue
            self.stats["messages_sent"] += 1
            node = self.nodes[d]
            if not node.up and node.epoch > 0:  # crashed (a node still booting may be up on arrival)
                self.stats["lost_down"] += 1
                continue
            if self._cut(src, d):
                self.stats["lost_partition"] += 1
                continue
            loss = self._loss()
            if loss > 0 and self.rng.random() < loss:
                self.stats["lost_random"] += 1
                continue
            copies = 1
            if self.cfg.duplicate > 0 and self.rng.random() < self.cfg.duplicate:
                copies = 2
                self.stats["duplicated"] += 1
            for _ in range(copies):
                t = self.now + self.rng.randint(lo, hi)
                self.at(t, partial(self._deliver, src, d, node.epoch, data))

    def _deliver(self, src: int, dest: int, epoch: int, data: bytes) -> None:
        node = self.nodes[dest]
        if not node.up or node.epoch != epoch:
            self.stats["lost_down"] += 1
            return
        if self._cut(src, dest):
            self.stats["lost_partition"] += 1
            return
        try:
            msg = decode_message(data)
        except DecodeError:
            self.stats["decode_errors"] += 1
            return
        self.stats["messages_delivered"] += 1
        if self.trace is not None:
            self.trace(f"{self.now:>7} {src}->{dest} {describe(msg)}")
        if node.byz is not None:
            self._byz_on_message(node, src, msg)
        elif self.nodes[src].byz is not None:
            self._track_conflicts(node, src, msg)
        self._call(
            node, lambda r: r.on_message(src, msg, self.local(node)), f"{type(msg).__name__} from {src}"
        )

    def _on_timer(self, node: SimNode, epoch: int, timer: Timer) -> None:
        if not node.up or node.epoch != epoch:
            return
        self.stats["timers"] += 1
        if self.trace is not None:
            self.trace(f"{self.now:>7} timer@{node.index} {timer.kind.name} v{timer.view}")
        self._call(node, lambda r: r.on_timer(timer, self.local(node)), f"timer {timer}")

    # ------------------------------------------------------------------ outputs and checks

    def _handle_output(self, node: SimNode, out: Output) -> None:
        if self.trace is not None:
            self._trace_output(node, out)
        # 1. log voted blocks and votes (persisted before anything is sent)
        for b in out.blocks:
            node.voted_blocks[b.hash] = b
        for v in out.wal:
            if node.honest:
                self._check_signed(node, v)
            node.wal.append(v)
            node.wal_set.add(v)
        if node.crash_pending and out.wal:
            self.stats["mid_output_crashes"] += 1
            self._crash(node)
            return
        # 2. send
        others = [j for j in range(self.n) if j != node.index]
        if node.honest:
            for dest, msg in out.messages:
                own = _own_vote(node.index, msg)
                if own is not None and own not in node.wal_set:
                    self.fail(f"node {node.index} sent {own} before logging it to its WAL")
                self.send(node.index, others if dest is None else [dest], msg)
        else:
            self._byz_send(node, out.messages)
        # 3. timers
        for timer in out.timers:
            t = timer.deadline_ms - T0_MS - node.skew
            self.at(t, partial(self._on_timer, node, node.epoch, timer))
        # 4. finalized blocks
        for fz in out.finalized:
            self._on_finalized(node, fz)
        if node.honest:
            for fz in out.finalized:
                h = node.final_hashes.get(fz.proof.block)
                if h is None or h < fz.block.height:
                    self.fail(
                        f"node {node.index} finalized height {fz.block.height} with a proof for "
                        f"{fz.proof.block.hex()[:12]}, not that block or a finalized descendant"
                    )

    def _trace_output(self, node: SimNode, out: Output) -> None:
        assert self.trace is not None
        r = node.replica
        state = f"view={r.view} fin={r.finalized_height}" if r is not None else "down"
        for v in out.wal:
            self.trace(f"{'':>7}   @{node.index} wal {describe(VoteMsg(v))}")
        for dest, msg in out.messages:
            self.trace(f"{'':>7}   @{node.index} send->{'*' if dest is None else dest} {describe(msg)}")
        for fz in out.finalized:
            self.trace(f"{'':>7}   @{node.index} FINALIZED h{fz.block.height} {fz.block.hash.hex()[:8]}")
        if out.wal or out.messages or out.finalized:
            self.trace(f"{'':>7}   @{node.index} {state}")

    def _check_signed(self, node: SimNode, v: Vote) -> None:
        if v.signer != node.index:
            self.fail(f"node {node.index} logged a vote signed by {v.signer}")
        s = node.signed.setdefault(v.view, _Signed())
        if v.kind == VoteKind.NOTARIZE:
            s.notarize.add(v.block)
            if len(s.notarize) > 1:
                self.fail(f"honest node {node.index} signed notarize for two blocks in view {v.view}")
        elif v.kind == VoteKind.FINALIZE:
            s.finalize.add(v.block)
            if len(s.finalize) > 1:
                self.fail(f"honest node {node.index} signed finalize for two blocks in view {v.view}")
            if s.nullify:
                self.fail(f"honest node {node.index} signed finalize after nullify in view {v.view}")
        else:
            s.nullify = True
            if s.finalize:
                self.fail(f"honest node {node.index} signed nullify after finalize in view {v.view}")

    def _on_finalized(self, node: SimNode, fz: Finalized) -> None:
        b = fz.block
        prev = node.store.tip()
        if node.honest:
            who = f"honest node {node.index}"
            if b.height != prev.height + 1:
                self.fail(f"{who} finalized height {b.height} after {prev.height} (gap or repeat)")
            if b.parent != prev.hash:
                self.fail(f"{who} finalized height {b.height} whose parent is not its block {prev.height}")
            self._check_block_rules(who, b, prev)
            proof = fz.proof
            if proof.kind != VoteKind.FINALIZE or not self.verifier.verify_certificate(proof):
                self.fail(f"{who} finalized height {b.height} with an invalid finalization certificate")
            have = self.final_hash.get(b.height)
            if have is None:
                self.final_hash[b.height] = b.hash
            elif have != b.hash:
                self.fail(
                    f"SAFETY: {who} finalized {b.hash.hex()[:12]} at height {b.height} but another "
                    f"honest node finalized {have.hex()[:12]}"
                )
            for tx in b.txs:
                tid = tx_id(tx)
                at = self.tx_height.setdefault(tid, b.height)
                if at != b.height:
                    self.fail(f"tx {tid.hex()[:12]} finalized at heights {at} and {b.height}")
            node.final_hashes[b.hash] = b.height
            self.stats["blocks_finalized"] += 1
        elif b.height != prev.height + 1 or b.parent != prev.hash:
            return  # a Byzantine node's own store; not checked
        node.store.items.append(fz)
        if node.app is not None:
            node.app.on_finalized(b)

    def _check_block_rules(self, who: str, b: Block, parent: Block) -> None:
        lim = self.cfg.limits
        problems = []
        if b.view <= parent.view:
            problems.append(f"view {b.view} not above parent's {parent.view}")
        if b.proposer != self.vset.leader(b.view):
            problems.append(f"proposer {b.proposer} is not the leader of view {b.view}")
        if b.timestamp_ms <= parent.timestamp_ms:
            problems.append("timestamp not after parent's")
        if b.timestamp_ms > T0_MS + self.now + self.cfg.clock_skew_ms + lim.max_clock_drift_ms:
            problems.append("timestamp too far in the future")
        if b.app_hash != chain_app_hash(parent):
            problems.append("wrong app hash")
        if len(b.txs) > lim.max_block_txs or b.size_bytes() > lim.max_block_bytes:
            problems.append("oversized block")
        if any(len(t) > lim.max_tx_bytes for t in b.txs):
            problems.append("oversized transaction")
        if len({tx_id(t) for t in b.txs}) != len(b.txs):
            problems.append("repeated transaction")
        if problems:
            self.fail(f"{who} finalized an invalid block at height {b.height}: {'; '.join(problems)}")

    # ------------------------------------------------------------------ faults over time

    def _max_height(self) -> int:
        return max((h for h in self.final_hash), default=0)

    def _partition_start(self, i: int) -> None:
        self._partition_floor[i] = self._max_height()
        self.stats["partitions"] += 1

    def _partition_end(self, i: int) -> None:
        p = self.cfg.partitions[i]
        quorum_possible = any(len(g) >= self.vset.quorum for g in p.groups)
        floor = self._partition_floor.get(i, 0)
        if not quorum_possible and self._max_height() > floor + self.cfg.no_progress_slack:
            self.fail(
                f"progress during partition {p.groups} with no quorum: height {floor} -> {self._max_height()}"
            )

    def _heal(self) -> None:
        self._healed = True
        self.height_at_heal = self._max_height()

    def _inject_txs(self) -> None:
        for _ in range(self.rng.randint(1, 3)):
            self._tx_counter += 1
            body = self.rng.randbytes(self.rng.randint(8, 120))
            tx = b"sim-tx/%d/%d/" % (self.seed, self._tx_counter) + body
            self.injected[tx_id(tx)] = self.now
            for node in self.nodes:
                if node.up and node.app is not None:
                    node.app.mempool.add(tx)
        self.at(self.now + self.rng.randint(*self.cfg.tx_interval_ms), self._inject_txs)

    def _final_checks(self) -> None:
        cfg = self.cfg
        live = [nd for nd in self.nodes if nd.honest and nd.up]
        if cfg.liveness_blocks > 0:
            target = self.height_at_heal + cfg.liveness_blocks
            behind = {nd.index: nd.store.last_height() for nd in live if nd.store.last_height() < target}
            if behind:
                self.fail(
                    f"LIVENESS: after heal at {cfg.heal_ms}ms (height {self.height_at_heal}), nodes "
                    f"{behind} did not reach height {target} by {cfg.duration_ms}ms"
                )
        if cfg.check_evidence and self.evidence_expected:
            honest = [nd for nd in self.nodes if nd.honest]
            for nd in honest:
                self._archive(nd)
            against = {pair[0].signer for nd in honest for pair in nd.evidence}
            missing = self.evidence_expected - against
            if missing:
                self.fail(
                    f"EVIDENCE: conflicting votes by {sorted(missing)} reached honest nodes "
                    "but none recorded evidence"
                )
        if cfg.check_tx_inclusion:
            late = [tid for tid, t in self.injected.items() if t < cfg.duration_ms - 3_000]
            missing_txs = [tid for tid in late if tid not in self.tx_height]
            if missing_txs:
                self.fail(f"{len(missing_txs)} of {len(late)} transactions were never finalized")

    # ------------------------------------------------------------------ evidence expectations

    def _track_conflicts(self, node: SimNode, src: int, msg: Message) -> None:
        """Note conflicting votes from an equivocating or double-voting Byzantine sender that
        reach honest `node` in a live view (evidence is then expected). Blatantly invalid
        proposals may be dropped unverified, so they do not count."""
        r = node.replica
        spec = self.nodes[src].byz
        if r is None or spec is None or spec.kind not in (ByzKind.EQUIVOCATE, ByzKind.DOUBLE_VOTE):
            return
        vote: Vote | None = None
        if isinstance(msg, VoteMsg) and msg.vote.signer == src and msg.vote.kind != VoteKind.NULLIFY:
            vote = msg.vote
        elif isinstance(msg, Proposal):
            b = msg.block
            tip = r.finalized_tip
            plausible = tip.height < b.height <= tip.height + (b.view - tip.view)
            if b.proposer == src and self.vset.leader(b.view) == src and plausible:
                lim = self.cfg.limits
                if len(b.txs) <= lim.max_block_txs and b.size_bytes() <= lim.max_block_bytes:
                    if all(len(t) <= lim.max_tx_bytes for t in b.txs):
                        vote = Vote(VoteKind.NOTARIZE, b.view, b.hash, src, msg.signature)
        if vote is None or vote.view < 1:
            return
        low = max(r.finalized_tip.view + 1, r.view - _EVIDENCE_WINDOW)
        if not low <= vote.view <= r.view + _EVIDENCE_WINDOW:
            return
        if not self.verifier.verify_vote(vote):
            return
        seen = node.received.setdefault((src, vote.view, vote.kind), set())
        seen.add(vote.block)
        if len(seen) > 1:
            self.evidence_expected.add(src)

    # ------------------------------------------------------------------ Byzantine behaviour

    def _byz_on_message(self, node: SimNode, src: int, msg: Message) -> None:
        """A Byzantine node serves the blocks it made up, so honest nodes can fetch them."""
        if isinstance(msg, BlockRequest):
            found = tuple(node.fake_blocks[h] for h in msg.hashes if h in node.fake_blocks)
            if found:
                self.send(node.index, [src], BlockResponse(found))

    def _byz_send(self, node: SimNode, messages: list[tuple[int | None, Message]]) -> None:
        spec = node.byz
        assert spec is not None
        me = node.index
        others = [j for j in range(self.n) if j != me]
        for dest, msg in messages:
            targets = others if dest is None else [dest]
            own_proposal = isinstance(msg, Proposal) and msg.block.proposer == me
            own_vote = isinstance(msg, VoteMsg) and msg.vote.signer == me
            if spec.kind is ByzKind.WITHHOLD:
                if spec.votes_only:
                    if isinstance(msg, (VoteMsg, CertificateMsg)):
                        self.stats["byz_withheld"] += 1
                        continue
                else:
                    kept = [t for t in targets if t in spec.reach]
                    self.stats["byz_withheld"] += len(targets) - len(kept)
                    targets = kept
                self.send(me, targets, msg)
            elif spec.kind is ByzKind.EQUIVOCATE and own_proposal:
                assert isinstance(msg, Proposal)
                self._equivocate(node, msg, targets)
            elif spec.kind is ByzKind.DOUBLE_VOTE and own_vote:
                assert isinstance(msg, VoteMsg)
                self._double_vote(node, msg.vote, targets)
            elif spec.kind is ByzKind.DOUBLE_VOTE and own_proposal:
                assert isinstance(msg, Proposal)
                self.send(me, targets, msg)
                if self.rng.random() < 0.5:
                    alt = node.signer.vote(VoteKind.NOTARIZE, msg.block.view, self.rng.randbytes(32))
                    self.stats["byz_double_votes"] += 1
                    self.send(me, targets, VoteMsg(alt))
            elif spec.kind is ByzKind.INVALID and own_proposal:
                assert isinstance(msg, Proposal)
                if self.rng.random() < 0.2:
                    self.send(me, targets, msg)
                else:
                    self._send_invalid_proposal(node, msg.block, targets)
            elif spec.kind is ByzKind.INVALID and isinstance(msg, SyncResponse) and msg.blocks:
                self.send(me, targets, self._tamper_sync(node, msg) if self.rng.random() < 0.7 else msg)
            elif spec.kind is ByzKind.INVALID and isinstance(msg, BlockResponse) and msg.blocks:
                if self.rng.random() < 0.5:
                    junk = (b"tampered/" + self.rng.randbytes(8),)
                    msg = BlockResponse(tuple(_rebuild(b, txs=b.txs + junk) for b in msg.blocks))
                    self.stats["byz_tampered_blocks"] += 1
                self.send(me, targets, msg)
            else:
                self.send(me, targets, msg)

    def _forged_cert(self, node: SimNode, kind: VoteKind, view: int, block: bytes) -> Certificate:
        """A certificate with a quorum of signers where only the Byzantine node's signature is real."""
        me = node.index
        others = [j for j in range(self.n) if j != me]
        signers = sorted({me, *self.rng.sample(others, self.vset.quorum - 1)})
        own = node.signer.vote(kind, view, block).signature
        sigs = tuple((s, own if s == me else self.rng.randbytes(64)) for s in signers)
        return Certificate(kind, view, block, sigs)

    def _tamper_sync(self, node: SimNode, msg: SyncResponse) -> SyncResponse:
        """A Byzantine answer to a sync request: forged proof, altered or made-up blocks."""
        rng = self.rng
        blocks = list(msg.blocks)
        variant = rng.choice(("forged_proof", "altered_last", "altered_middle", "fake_fork", "no_proof"))
        self.stats[f"byz_sync_{variant}"] += 1
        if variant == "forged_proof":
            last = blocks[-1]
            return SyncResponse(msg.blocks, self._forged_cert(node, VoteKind.FINALIZE, last.view, last.hash))
        if variant == "altered_last":
            blocks[-1] = _rebuild(blocks[-1], txs=(b"forged/" + rng.randbytes(8),))
            last = blocks[-1]
            return SyncResponse(
                tuple(blocks), self._forged_cert(node, VoteKind.FINALIZE, last.view, last.hash)
            )
        if variant == "altered_middle":
            i = rng.randrange(len(blocks))
            blocks[i] = _rebuild(blocks[i], timestamp_ms=blocks[i].timestamp_ms + 1)
            return SyncResponse(tuple(blocks), msg.proof)
        if variant == "fake_fork":
            # A whole made-up chain from the first block's parent, "finalized" by a forged proof.
            prev_hash = blocks[0].parent
            prev = self.blocks.get(prev_hash, GENESIS)
            fake: list[Block] = []
            for b in blocks:
                nb = Block(
                    b.height,
                    b.view,
                    prev_hash,
                    b.timestamp_ms,
                    b.proposer,
                    chain_app_hash(prev),
                    (rng.randbytes(12),),
                )
                fake.append(nb)
                prev_hash, prev = nb.hash, nb
            last = fake[-1]
            return SyncResponse(tuple(fake), self._forged_cert(node, VoteKind.FINALIZE, last.view, last.hash))
        return SyncResponse(msg.blocks, None)

    def _halves(self, targets: Sequence[int]) -> tuple[list[int], list[int]]:
        t = list(targets)
        self.rng.shuffle(t)
        k = len(t) // 2 if self.rng.random() < 0.5 else (len(t) + 1) // 2
        return t[:k], t[k:]

    def _equivocate(self, node: SimNode, msg: Proposal, targets: Sequence[int]) -> None:
        a = msg.block
        alt_txs = a.txs[:-1] if a.txs else (b"equivocation/%d/" % a.view + self.rng.randbytes(16),)
        b = Block(a.height, a.view, a.parent, a.timestamp_ms + 1, a.proposer, a.app_hash, alt_txs)
        sig_b = node.signer.vote(VoteKind.NOTARIZE, b.view, b.hash).signature
        group_a, group_b = self._halves(targets)
        self.stats["byz_equivocations"] += 1
        self.send(node.index, group_a, msg)
        self.send(node.index, group_b, Proposal(b, sig_b))
        if self.rng.random() < 0.3 and targets:
            # A witness sees both proposals.
            w = self.rng.choice(list(targets))
            self.send(node.index, [w], Proposal(b, sig_b) if w in group_a else msg)

    def _double_vote(self, node: SimNode, vote: Vote, targets: Sequence[int]) -> None:
        me = node.index
        if vote.kind == VoteKind.NULLIFY:
            self.send(me, targets, VoteMsg(vote))
            return
        alt = node.signer.vote(vote.kind, vote.view, self.rng.randbytes(32))
        self.stats["byz_double_votes"] += 1
        pair = [VoteMsg(vote), VoteMsg(alt)]
        self.rng.shuffle(pair)
        if self.rng.random() < 0.6:
            for m in pair:
                self.send(me, targets, m)
        else:
            g1, g2 = self._halves(targets)
            self.send(me, g1, pair[0])
            self.send(me, g2, pair[1])
        if vote.kind == VoteKind.FINALIZE and self.rng.random() < 0.3:
            self.send(me, targets, VoteMsg(node.signer.vote(VoteKind.NULLIFY, vote.view, ZERO_HASH)))

    def _sign_proposal(self, node: SimNode, b: Block) -> Proposal:
        return Proposal(b, node.signer.vote(VoteKind.NOTARIZE, b.view, b.hash).signature)

    def _send_invalid_proposal(self, node: SimNode, base: Block, targets: Sequence[int]) -> None:
        """Replace a Byzantine leader's proposal with an invalid one (one of many kinds)."""
        me = node.index
        rng = self.rng
        lim = self.cfg.limits
        known_parent = self.blocks.get(base.parent)
        variant = rng.choice(_INVALID_PROPOSALS)
        self.stats[f"byz_invalid_{variant}"] += 1

        def blk(
            *,
            height: int | None = None,
            view: int | None = None,
            parent: bytes | None = None,
            timestamp_ms: int | None = None,
            proposer: int | None = None,
            app_hash: bytes | None = None,
            txs: tuple[bytes, ...] | None = None,
        ) -> Block:
            return Block(
                base.height if height is None else height,
                base.view if view is None else view,
                base.parent if parent is None else parent,
                base.timestamp_ms if timestamp_ms is None else timestamp_ms,
                base.proposer if proposer is None else proposer,
                base.app_hash if app_hash is None else app_hash,
                base.txs if txs is None else txs,
            )

        if variant == "wrong_height":
            self.send(me, targets, self._sign_proposal(node, blk(height=base.height + rng.choice((1, 2, 5)))))
        elif variant == "unknown_parent":
            self.send(me, targets, self._sign_proposal(node, blk(parent=rng.randbytes(32))))
        elif variant == "unnotarized_parent":
            # A made-up parent that was never proposed or notarized, served on request.
            fake_parent = blk(
                view=max(base.view - 1, 1),
                timestamp_ms=base.timestamp_ms - 1,
                txs=(b"fake/" + rng.randbytes(16),),
            )
            node.fake_blocks[fake_parent.hash] = fake_parent
            child = Block(
                fake_parent.height + 1,
                base.view,
                fake_parent.hash,
                base.timestamp_ms,
                me,
                chain_app_hash(fake_parent),
                (),
            )
            self.send(me, targets, self._sign_proposal(node, child))
        elif variant == "stale_parent" and known_parent is not None and known_parent.height >= 1:
            # Skip the notarized parent and build on the grandparent instead.
            gp = self.blocks.get(known_parent.parent)
            if gp is None:
                gp = GENESIS
            b = Block(gp.height + 1, base.view, gp.hash, base.timestamp_ms, me, chain_app_hash(gp), base.txs)
            self.send(me, targets, self._sign_proposal(node, b))
        elif variant == "ts_not_after_parent" and known_parent is not None:
            ts = known_parent.timestamp_ms - rng.choice((0, 1, 1_000))
            self.send(me, targets, self._sign_proposal(node, blk(timestamp_ms=ts)))
        elif variant == "ts_future":
            ts = (
                self.local(node)
                + lim.max_clock_drift_ms
                + self.cfg.clock_skew_ms * 2
                + rng.randint(500, 10_000)
            )
            self.send(me, targets, self._sign_proposal(node, blk(timestamp_ms=ts)))
        elif variant == "bad_signature":
            sig = rng.choice(
                (
                    rng.randbytes(64),
                    node.signer.vote(VoteKind.NOTARIZE, base.view + 1, base.hash).signature,
                    node.signer.vote(VoteKind.FINALIZE, base.view, base.hash).signature,
                )
            )
            self.send(me, targets, Proposal(base, sig))
        elif variant == "wrong_proposer":
            other = (me + 1) % self.n
            self.send(me, targets, self._sign_proposal(node, blk(proposer=other)))
        elif variant == "oversized_count":
            txs = tuple(b"big/%d/" % i + rng.randbytes(4) for i in range(lim.max_block_txs + 1))
            self.send(me, targets, self._sign_proposal(node, blk(txs=txs)))
        elif variant == "oversized_tx":
            self.send(me, targets, self._sign_proposal(node, blk(txs=(rng.randbytes(lim.max_tx_bytes + 1),))))
        elif variant == "oversized_bytes":
            per = lim.max_tx_bytes
            count = lim.max_block_bytes // per + 1
            txs = tuple(b"%d/" % i + rng.randbytes(per - 8) for i in range(count))
            self.send(me, targets, self._sign_proposal(node, blk(txs=txs)))
        elif variant == "bad_app_hash":
            self.send(me, targets, self._sign_proposal(node, blk(app_hash=rng.randbytes(32))))
        elif variant == "repeated_tx":
            tx = b"dup/" + rng.randbytes(10)
            self.send(me, targets, self._sign_proposal(node, blk(txs=(tx, tx))))
        elif variant == "future_view":
            self.send(
                me, targets, self._sign_proposal(node, blk(view=base.view + self.n * rng.randint(1, 3)))
            )
        else:  # "garbage" (and variants whose precondition did not hold)
            good = encode_message(
                Proposal(base, node.signer.vote(VoteKind.NOTARIZE, base.view, base.hash).signature)
            )
            data = rng.choice(
                (
                    rng.randbytes(rng.randint(0, 300)),
                    good[: rng.randint(0, len(good) - 1)],
                    good + b"\x00",
                    b"\xff" + good[1:],
                )
            )
            self.send_raw(me, targets, data)

    def _byz_inject(self, node: SimNode) -> None:
        """Periodic crafted messages from an INVALID Byzantine node, to a random set of peers."""
        self.at(self.now + self.rng.randint(200, 900), lambda: self._byz_inject(node))
        r = node.replica
        if not node.up or r is None:
            return
        rng = self.rng
        me = node.index
        others = [j for j in range(self.n) if j != me]
        targets = rng.sample(others, rng.randint(1, len(others)))
        view = max(r.view, 1)
        quorum = self.vset.quorum
        tip = r.finalized_tip
        attack = rng.choice(_INJECTED_ATTACKS)
        self.stats[f"byz_inject_{attack}"] += 1
        msg: Message
        if attack == "not_leader_proposal":
            v = view if self.vset.leader(view) != me else view + 1
            b = Block(tip.height + 1, v, tip.hash, self.local(node), me, chain_app_hash(tip), ())
            msg = self._sign_proposal(node, b)
        elif attack == "bad_vote_signature":
            kind = rng.choice((VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE))
            block = ZERO_HASH if kind == VoteKind.NULLIFY else rng.randbytes(32)
            msg = VoteMsg(Vote(kind, view, block, me, rng.randbytes(64)))
        elif attack == "relayed_vote":
            other = rng.choice(others)
            msg = VoteMsg(Vote(VoteKind.NULLIFY, view, ZERO_HASH, other, rng.randbytes(64)))
        elif attack == "nullify_with_block":
            msg = VoteMsg(node.signer.vote(VoteKind.NULLIFY, view, rng.randbytes(32)))
        elif attack == "vote_view_zero":
            msg = VoteMsg(node.signer.vote(VoteKind.NOTARIZE, 0, rng.randbytes(32)))
        elif attack == "far_future_vote":
            msg = VoteMsg(
                node.signer.vote(VoteKind.NULLIFY, view + 10_000 + rng.randint(0, 10**6), ZERO_HASH)
            )
        elif attack == "short_certificate":
            own = node.signer.vote(VoteKind.NULLIFY, view, ZERO_HASH)
            msg = CertificateMsg(Certificate(VoteKind.NULLIFY, view, ZERO_HASH, ((me, own.signature),)))
        elif attack == "repeated_signer_certificate":
            own = node.signer.vote(VoteKind.NULLIFY, view, ZERO_HASH)
            sigs = tuple((me, own.signature) for _ in range(quorum))
            msg = CertificateMsg(Certificate(VoteKind.NULLIFY, view, ZERO_HASH, sigs))
        elif attack == "forged_certificate":
            kind = rng.choice((VoteKind.NOTARIZE, VoteKind.NULLIFY, VoteKind.FINALIZE))
            block = ZERO_HASH if kind == VoteKind.NULLIFY else rng.randbytes(32)
            msg = CertificateMsg(self._forged_cert(node, kind, view, block))
        elif attack == "forged_sync":
            fake = Block(
                tip.height + 1, tip.view + 1, tip.hash, tip.timestamp_ms + 1, me, chain_app_hash(tip), ()
            )
            msg = SyncResponse((fake,), self._forged_cert(node, VoteKind.FINALIZE, fake.view, fake.hash))
        elif attack == "unsolicited_blocks":
            fake = Block(tip.height + 1, view, tip.hash, self.local(node), me, chain_app_hash(tip), ())
            msg = BlockResponse((fake,))
        elif attack == "lying_status":
            msg = Status(view + rng.randint(0, 50), r.finalized_height + rng.randint(1, 1_000))
        elif attack == "huge_sync_request":
            msg = SyncRequest(rng.choice((0, 1, 2**63)), 2**32 - 1)
        elif attack == "block_request_flood":
            msg = BlockRequest(tuple(rng.randbytes(32) for _ in range(64)))
        elif attack == "cert_request_flood":
            views = [rng.choice((0, 1, view, view + 1, 2**63 + rng.randint(0, 10**6))) for _ in range(64)]
            msg = CertificateRequest(tuple(views[:MAX_CERT_VIEWS_PER_REQUEST]))
        else:  # "tx_gossip"
            msg = TxGossip((b"gossip",))
        self.send(me, targets, msg)


_INVALID_PROPOSALS: tuple[str, ...] = (
    "wrong_height",
    "unknown_parent",
    "unnotarized_parent",
    "stale_parent",
    "ts_not_after_parent",
    "ts_future",
    "bad_signature",
    "wrong_proposer",
    "oversized_count",
    "oversized_tx",
    "oversized_bytes",
    "bad_app_hash",
    "repeated_tx",
    "future_view",
    "garbage",
)

_INJECTED_ATTACKS: tuple[str, ...] = (
    "not_leader_proposal",
    "bad_vote_signature",
    "relayed_vote",
    "nullify_with_block",
    "vote_view_zero",
    "far_future_vote",
    "short_certificate",
    "repeated_signer_certificate",
    "forged_certificate",
    "forged_sync",
    "unsolicited_blocks",
    "lying_status",
    "huge_sync_request",
    "block_request_flood",
    "cert_request_flood",
    "tx_gossip",
)


def _rebuild(b: Block, *, txs: tuple[bytes, ...] | None = None, timestamp_ms: int | None = None) -> Block:
    """A copy of `b` with some fields changed (and so a new hash)."""
    return Block(
        b.height,
        b.view,
        b.parent,
        b.timestamp_ms if timestamp_ms is None else timestamp_ms,
        b.proposer,
        b.app_hash,
        b.txs if txs is None else txs,
    )


def describe(msg: Message) -> str:
    """A short human-readable form of a message, for traces."""
    match msg:
        case Proposal(b, _):
            return (
                f"Proposal v{b.view} h{b.height} {b.hash.hex()[:8]} "
                f"parent={b.parent.hex()[:8]} by {b.proposer} txs={len(b.txs)}"
            )
        case VoteMsg(v):
            return f"{v.kind.name} v{v.view} {v.block.hex()[:8]} by {v.signer}"
        case CertificateMsg(c):
            signers = ",".join(str(s) for s, _ in c.signatures)
            return f"CERT {c.kind.name} v{c.view} {c.block.hex()[:8]} [{signers}]"
        case BlockRequest(hashes):
            return f"BlockRequest {[h.hex()[:8] for h in hashes]}"
        case BlockResponse(blocks):
            return f"BlockResponse {[(b.height, b.hash.hex()[:8]) for b in blocks]}"
        case SyncRequest(h, m):
            return f"SyncRequest from={h} max={m}"
        case SyncResponse(blocks, proof):
            pv = f"v{proof.view}" if proof else "-"
            return f"SyncResponse {[b.height for b in blocks]} proof={pv}"
        case Status(v, h):
            return f"Status view={v} fin={h}"
        case TxGossip(txs):
            return f"TxGossip {len(txs)}"
        case CertificateRequest(views):
            return f"CertificateRequest {list(views[:8])}"
    return type(msg).__name__


def _own_vote(me: int, msg: Message) -> Vote | None:
    """The vote by `me` that sending `msg` reveals (a vote, or a proposal's notarize signature)."""
    if isinstance(msg, VoteMsg) and msg.vote.signer == me:
        return msg.vote
    if isinstance(msg, Proposal) and msg.block.proposer == me:
        b = msg.block
        return Vote(VoteKind.NOTARIZE, b.view, b.hash, me, msg.signature)
    return None


# ---------------------------------------------------------------------------- scenarios


LIVENESS_WINDOW_MS = 6_000


def _latency(rng: random.Random, wide: bool = False) -> tuple[int, int]:
    lo = rng.randint(10, 40)
    return lo, lo + rng.randint(20, 400 if wide else 150)


def _split(rng: random.Random, members: Sequence[int], parts: int) -> tuple[tuple[int, ...], ...]:
    m = list(members)
    rng.shuffle(m)
    cuts = sorted(rng.sample(range(1, len(m)), parts - 1))
    groups = []
    prev = 0
    for c in [*cuts, len(m)]:
        groups.append(tuple(sorted(m[prev:c])))
        prev = c
    return tuple(groups)


def _partitions(rng: random.Random, n: int, start: int, end: int) -> tuple[Partition, ...]:
    out = []
    t = start
    for _ in range(rng.randint(1, 3)):
        if t >= end - 500:
            break
        s = rng.randint(t, end - 500)
        e = rng.randint(s + 300, min(end, s + 6_000))
        out.append(Partition(s, e, _split(rng, range(n), rng.choice((2, 2, 3)))))
        t = e + rng.randint(0, 1_500)
    return tuple(out)


def _crashes(
    rng: random.Random, candidates: Sequence[int], start: int, end: int, count: int
) -> tuple[Crash, ...]:
    out = []
    for node in rng.sample(list(candidates), min(count, len(candidates))):
        at = rng.randint(start, end - 300)
        back = rng.randint(at + 200, min(end, at + 6_000))
        out.append(Crash(node, at, back, mid_output=rng.random() < 0.4))
        if rng.random() < 0.3 and back < end - 1_000:  # crash again
            at2 = rng.randint(back + 100, end - 300)
            out.append(Crash(node, at2, rng.randint(at2 + 200, end), mid_output=rng.random() < 0.4))
    return tuple(out)


def _byzantine(rng: random.Random, n: int, count: int, kinds: Sequence[ByzKind]) -> tuple[Byzantine, ...]:
    out = []
    for node in sorted(rng.sample(range(n), count)):
        kind = rng.choice(list(kinds))
        if kind is ByzKind.WITHHOLD:
            others = [j for j in range(n) if j != node]
            style = rng.random()
            if style < 0.4:
                out.append(Byzantine(node, kind))  # silent
            elif style < 0.7:
                out.append(Byzantine(node, kind, votes_only=True))
            else:
                reach = tuple(sorted(rng.sample(others, rng.randint(1, len(others) - 1))))
                out.append(Byzantine(node, kind, reach=reach))
        else:
            out.append(Byzantine(node, kind))
    return tuple(out)


def make_scenario(name: str, seed: int, n: int) -> ScenarioConfig:
    """A randomized scenario of kind `name` (one of SCENARIOS, or "random") for this seed."""
    rng = random.Random(f"stele-sim/{name}/{n}/{seed}")
    if name == "random":
        name = rng.choice(SCENARIOS)
    f = (n - 1) // 3
    skew = rng.choice((0, 0, 50, 150))
    if name == "honest":
        return ScenarioConfig(
            name=name,
            duration_ms=rng.randint(5_000, 8_000),
            latency_ms=_latency(rng),
            clock_skew_ms=skew,
            check_tx_inclusion=True,
        )
    if name == "lossy":
        heal = rng.randint(3_000, 7_000)
        return ScenarioConfig(
            name=name,
            duration_ms=heal + LIVENESS_WINDOW_MS,
            heal_ms=heal,
            latency_ms=_latency(rng, wide=True),
            loss=rng.uniform(0.05, 0.35),
            heal_loss=rng.choice((0.0, 0.0, 0.02)),
            duplicate=rng.uniform(0.0, 0.3),
            clock_skew_ms=skew,
        )
    if name == "partition":
        heal = rng.randint(4_000, 9_000)
        return ScenarioConfig(
            name=name,
            duration_ms=heal + LIVENESS_WINDOW_MS,
            heal_ms=heal,
            latency_ms=_latency(rng),
            partitions=_partitions(rng, n, 300, heal),
            duplicate=rng.choice((0.0, 0.05)),
            clock_skew_ms=skew,
        )
    if name == "crash":
        heal = rng.randint(4_000, 9_000)
        crashes = _crashes(rng, range(n), 200, heal, rng.randint(1, n - 1))
        if f >= 1 and rng.random() < 0.3:
            victim = rng.choice([c.node for c in crashes] or [0])
            others = [c for c in crashes if c.node != victim]
            crashes = (*others, Crash(victim, rng.randint(200, heal), None, mid_output=rng.random() < 0.4))
        return ScenarioConfig(
            name=name,
            duration_ms=heal + LIVENESS_WINDOW_MS,
            heal_ms=heal,
            latency_ms=_latency(rng),
            crashes=crashes,
            loss=rng.choice((0.0, 0.05)),
            clock_skew_ms=skew,
        )
    if name in ("equivocate", "double_vote", "invalid", "withhold"):
        kind = ByzKind(name)
        heal = rng.choice((0, rng.randint(2_000, 4_000)))
        return ScenarioConfig(
            name=name,
            duration_ms=max(heal, 2_000) + LIVENESS_WINDOW_MS,
            heal_ms=heal,
            latency_ms=_latency(rng),
            loss=rng.choice((0.0, 0.02, 0.1)) if heal else 0.0,
            duplicate=rng.choice((0.0, 0.05)),
            byzantine=_byzantine(rng, n, rng.randint(1, f), (kind,)),
            clock_skew_ms=skew,
        )
    if name == "mixed":
        heal = rng.randint(4_000, 9_000)
        byz = _byzantine(rng, n, rng.randint(0, f), tuple(ByzKind))
        honest = [i for i in range(n) if i not in {b.node for b in byz}]
        return ScenarioConfig(
            name=name,
            duration_ms=heal + LIVENESS_WINDOW_MS,
            heal_ms=heal,
            latency_ms=_latency(rng, wide=rng.random() < 0.3),
            loss=rng.choice((0.0, 0.05, 0.2)),
            duplicate=rng.choice((0.0, 0.1)),
            partitions=_partitions(rng, n, 300, heal) if rng.random() < 0.5 else (),
            crashes=_crashes(rng, honest, 200, heal, rng.randint(0, 2)),
            byzantine=byz,
            clock_skew_ms=skew,
        )
    raise ValueError(f"unknown scenario {name!r}; expected one of {SCENARIOS} or 'random'")


def run_scenario(
    seed: int, n: int, scenario: str | ScenarioConfig, trace: Callable[[str], None] | None = None
) -> SimResult:
    """Run one deterministic simulation and return its result (failures are in `result.failures`)."""
    cfg = make_scenario(scenario, seed, n) if isinstance(scenario, str) else scenario
    return Simulator(seed, n, cfg, trace).run()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run the Stele Simplex simulator.")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds")
    p.add_argument("--n", type=int, default=4, help="validators")
    p.add_argument("--scenario", default="random", help=f"one of {', '.join(SCENARIOS)} or random")
    p.add_argument("-v", "--verbose", action="store_true", help="print every result")
    p.add_argument("--trace", action="store_true", help="print every delivered message and output")
    args = p.parse_args(argv)
    bad = 0
    started = time.perf_counter()
    for seed in range(args.seed, args.seed + args.seeds):
        res = run_scenario(seed, args.n, args.scenario, print if args.trace else None)
        if not res.ok:
            bad += 1
        if args.verbose or not res.ok:
            print(res.summary())
    took = time.perf_counter() - started
    print(f"{args.seeds - bad}/{args.seeds} seeds ok in {took:.1f}s", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
