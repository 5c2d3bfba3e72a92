"""Deterministic simulation of Simplex (see `consensus.sim` for what is modelled and checked).

The sweep runs 500 seeds by default: 350 with n=4 and 150 with n=7, each seed assigned
round-robin to one of `consensus.sim.SCENARIOS` (honest, lossy, partition, crash,
equivocate, double_vote, invalid, withhold, mixed). Safety is checked after every event
and liveness after the network heals.

More seeds:

    STELE_SIM_SEEDS=10000 .venv/bin/pytest -q tests/test_simulator.py
    STELE_SIM_SEEDS=2000 STELE_SIM_SEED_BASE=50000 .venv/bin/pytest -q tests/test_simulator.py -k sweep

(70% of the seeds use n=4, the rest n=7.) A failing seed prints its summary and a
command that replays it, e.g.

    .venv/bin/python -m consensus.sim --seed 17 --n 4 --scenario crash -v --trace
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from consensus.crypto import Signer
from consensus.interface import Output, Timer, TimerKind
from consensus.mempool import MempoolApp, chain_app_hash
from consensus.messages import CertificateMsg, Message, Proposal, Status, VoteMsg
from consensus.replica import Replica
from consensus.sim import (
    GENESIS,
    SCENARIOS,
    SIM_LIMITS,
    T0_MS,
    Byzantine,
    ByzKind,
    Crash,
    MemoryStore,
    Partition,
    ScenarioConfig,
    SimResult,
    make_keys,
    make_scenario,
    run_scenario,
)
from consensus.types import Block, Certificate, Vote, VoteKind, tx_id

DEFAULT_SEEDS = 500
N_SEEDS = int(os.environ.get("STELE_SIM_SEEDS", DEFAULT_SEEDS))
SEED_BASE = int(os.environ.get("STELE_SIM_SEED_BASE", 0))


def _sweep_cases() -> Iterator[tuple[int, int, str]]:
    n4 = N_SEEDS * 7 // 10
    for n, count in ((4, n4), (7, N_SEEDS - n4)):
        for i in range(count):
            yield n, SEED_BASE + i, SCENARIOS[i % len(SCENARIOS)]


SWEEP = list(_sweep_cases())


def _assert_ok(res: SimResult) -> None:
    assert res.ok, "\n" + res.summary()


@pytest.mark.parametrize("n, seed, scenario", SWEEP, ids=[f"n{n}-{sc}-s{s}" for n, s, sc in SWEEP])
def test_sweep(n: int, seed: int, scenario: str) -> None:
    _assert_ok(run_scenario(seed, n, scenario))


# ---------------------------------------------------------------------------- targeted runs


def _chain(res: SimResult, node: int) -> list[Block]:
    return [f.block for f in res.nodes[node].store.items]


@pytest.mark.parametrize("n", [4, 7])
def test_honest_happy_path_one_block_per_view(n: int) -> None:
    cfg = ScenarioConfig(
        name="happy", duration_ms=6_000, latency_ms=(20, 60), check_tx_inclusion=True, start_jitter_ms=0
    )
    res = run_scenario(1, n, cfg)
    _assert_ok(res)
    heights = res.heights
    assert len(heights) == n
    assert min(heights.values()) >= 10
    assert max(heights.values()) - min(heights.values()) <= 1
    longest = max(range(n), key=lambda i: heights[i])
    reference = _chain(res, longest)
    for i in range(n):
        chain = _chain(res, i)
        assert [b.hash for b in chain] == [b.hash for b in reference[: len(chain)]]
    # No view was skipped: view v finalized the block at height v, proposed by v's leader.
    for b in reference:
        assert b.view == b.height
        assert b.proposer == b.view % n
    # Nothing was dropped as invalid (repeats of votes or certificates are harmless).
    harmless = {"duplicate_vote", "duplicate_certificate", "stale_vote", "stale_certificate"}
    assert set(res.dropped) <= harmless, res.dropped
    assert res.stats["decode_errors"] == 0


def test_crashed_node_catches_up_by_sync() -> None:
    # Node 3 is down for 8 s while the rest finalize dozens of blocks; a small sync
    # batch forces several SyncRequest/SyncResponse rounds.
    from consensus.interface import ReplicaConfig

    cfg = ScenarioConfig(
        name="catch-up",
        duration_ms=15_000,
        heal_ms=9_000,
        latency_ms=(20, 60),
        crashes=(Crash(3, 1_000, 9_000),),
        replica_config=ReplicaConfig(sync_batch=8),
    )
    res = run_scenario(2, 4, cfg)
    _assert_ok(res)
    assert res.height_at_heal >= 15  # the others made progress while node 3 was down
    assert res.heights[3] >= res.height_at_heal + 3
    assert max(res.heights.values()) - res.heights[3] <= 1
    assert [b.hash for b in _chain(res, 3)] == [b.hash for b in _chain(res, 0)][: res.heights[3]]


def test_short_crashes_catch_up_by_block_fetch() -> None:
    cfg = ScenarioConfig(
        name="blips",
        duration_ms=12_000,
        heal_ms=6_000,
        latency_ms=(20, 80),
        crashes=(Crash(1, 700, 1_600), Crash(2, 2_100, 2_900), Crash(3, 3_300, 4_200, mid_output=True)),
    )
    _assert_ok(run_scenario(3, 4, cfg))


def _wal_scenario(seed: int) -> ScenarioConfig:
    # An equivocating leader plus honest nodes that crash right after logging a vote:
    # a restarted node must remember what it signed and never sign a conflicting vote.
    crashes = []
    for k in range(6):
        node = (0, 2, 3)[(seed + k) % 3]
        at = 400 + k * 1_100 + (seed * 37) % 300
        crashes.append(Crash(node, at, at + 500, mid_output=True))
    return ScenarioConfig(
        name="wal",
        duration_ms=14_000,
        heal_ms=8_000,
        latency_ms=(10, 90),
        duplicate=0.1,
        crashes=tuple(crashes),
        byzantine=(Byzantine(1, ByzKind.EQUIVOCATE),),
    )


def test_restarted_node_never_signs_conflicting_votes() -> None:
    mid_output = 0
    for seed in range(12):
        res = run_scenario(seed, 4, _wal_scenario(seed))
        _assert_ok(res)  # includes the per-view vote discipline check across lifetimes
        mid_output += res.stats["mid_output_crashes"]
        for node in res.nodes:
            if node.byz is None:
                assert all(v.signer == node.index for v in node.wal)
    assert mid_output >= 12


@pytest.mark.parametrize(
    "n, groups", [(4, ((0, 1), (2, 3))), (7, ((0, 1, 2), (3, 4, 5, 6))), (7, ((0, 1), (2, 3), (4, 5, 6)))]
)
def test_partition_without_quorum_makes_no_progress_then_heals(
    n: int, groups: tuple[tuple[int, ...], ...]
) -> None:
    cfg = ScenarioConfig(
        name="split",
        duration_ms=14_000,
        heal_ms=8_000,
        latency_ms=(20, 60),
        partitions=(Partition(0, 8_000, groups),),
        no_progress_slack=0,
    )
    res = run_scenario(4, n, cfg)
    _assert_ok(res)
    assert res.height_at_heal == 0
    assert min(res.heights.values()) >= 3


def test_partition_mid_run_2_2() -> None:
    cfg = ScenarioConfig(
        name="split-mid",
        duration_ms=15_000,
        heal_ms=9_000,
        latency_ms=(20, 60),
        partitions=(Partition(2_500, 9_000, ((0, 3), (1, 2))),),
    )
    res = run_scenario(5, 4, cfg)
    _assert_ok(res)
    assert res.height_at_heal >= 3  # progress before the split


@pytest.mark.parametrize("kind", [ByzKind.EQUIVOCATE, ByzKind.DOUBLE_VOTE])
def test_equivocation_is_recorded_as_evidence(kind: ByzKind) -> None:
    cfg = ScenarioConfig(name=kind.value, duration_ms=10_000, byzantine=(Byzantine(1, kind),))
    res = run_scenario(6, 4, cfg)
    _assert_ok(res)
    assert res.evidence_expected == (1,)
    evidence = [pair for node in res.nodes if node.byz is None for pair in node.evidence]
    assert evidence
    for a, b in evidence:
        assert a.signer == b.signer == 1 and a.view == b.view and a.block != b.block


def test_invalid_messages_are_dropped_not_fatal() -> None:
    cfg = ScenarioConfig(name="invalid", duration_ms=14_000, byzantine=(Byzantine(2, ByzKind.INVALID),))
    res = run_scenario(7, 4, cfg)
    _assert_ok(res)
    attacks = [k for k in res.stats if k.startswith(("byz_invalid_", "byz_inject_"))]
    assert len(attacks) >= 8
    assert sum(res.dropped.values()) > 0


def test_runs_are_deterministic() -> None:
    a = run_scenario(11, 4, "mixed")
    b = run_scenario(11, 4, "mixed")
    assert a.stats == b.stats
    assert a.heights == b.heights
    assert [_chain(a, i)[-1].hash if _chain(a, i) else b"" for i in a.heights] == [
        _chain(b, i)[-1].hash if _chain(b, i) else b"" for i in b.heights
    ]


def test_scenario_picker_covers_all_kinds() -> None:
    picked = {make_scenario("random", seed, 4).name for seed in range(200)}
    assert picked == set(SCENARIOS)
    for name in SCENARIOS:
        for n in (4, 7):
            cfg = make_scenario(name, 0, n)
            assert len(cfg.byzantine) <= (n - 1) // 3


# ---------------------------------------------------------------------------- replica-level WAL checks


class _Harness:
    """One replica (validator `me` of 4) driven by hand, with the others' keys to forge their messages."""

    def __init__(self, me: int = 0) -> None:
        self.me = me
        self.vset, seeds = make_keys(4)
        self.signers = [Signer(s, self.vset) for s in seeds]
        self.store = MemoryStore()
        self.wal: list[Vote] = []
        self.sent: list[Message] = []
        self.timers: list[Timer] = []
        self.now = T0_MS
        self.replica = self._new()

    def _new(self) -> Replica:
        return Replica(
            validators=self.vset,
            signer=self.signers[self.me],
            app=MempoolApp(limits=SIM_LIMITS),
            store=self.store,
            genesis=GENESIS,
            limits=SIM_LIMITS,
            recovered_votes=list(self.wal),
        )

    def take(self, out: Output) -> Output:
        self.wal.extend(out.wal)
        self.sent.extend(m for _, m in out.messages)
        self.timers.extend(out.timers)
        for f in out.finalized:
            self.store.items.append(f)
        return out

    def advance(self, ms: int) -> None:
        """Fire this replica's own timers, in deadline order, for `ms` of time (no peers)."""
        end = self.now + ms
        while True:
            due = sorted((t for t in self.timers if t.deadline_ms <= end), key=lambda t: t.deadline_ms)
            if not due:
                break
            t = due[0]
            self.timers.remove(t)
            self.now = max(self.now, t.deadline_ms)
            self.take(self.replica.on_timer(t, self.now))
        self.now = end

    def restart(self) -> None:
        self.timers = []  # a crash loses the timers
        self.replica = self._new()
        self.take(self.replica.start(self.now))

    def block(self, view: int, salt: bytes) -> Block:
        return Block(1, view, GENESIS.hash, self.now, view % 4, chain_app_hash(GENESIS), (salt,))

    def proposal(self, b: Block) -> Proposal:
        return Proposal(b, self.signers[b.proposer].vote(VoteKind.NOTARIZE, b.view, b.hash).signature)

    def cert(self, kind: VoteKind, view: int, block: bytes, signers: tuple[int, ...]) -> CertificateMsg:
        sigs = tuple((s, self.signers[s].vote(kind, view, block).signature) for s in signers)
        return CertificateMsg(Certificate(kind, view, block, sigs))

    def my_votes(self, kind: VoteKind, view: int) -> set[bytes]:
        return {v.block for v in self.wal if v.kind == kind and v.view == view}


def test_restart_does_not_notarize_a_second_block_in_the_view() -> None:
    h = _Harness()
    h.take(h.replica.start(h.now))
    a, b = h.block(1, b"a"), h.block(1, b"b")
    h.now += 20
    h.take(h.replica.on_message(1, h.proposal(a), h.now))
    assert h.my_votes(VoteKind.NOTARIZE, 1) == {a.hash}
    h.restart()
    h.now += 20
    h.take(h.replica.on_message(1, h.proposal(b), h.now))
    assert h.my_votes(VoteKind.NOTARIZE, 1) == {a.hash}
    assert not any(isinstance(m, VoteMsg) and m.vote.block == b.hash and m.vote.signer == 0 for m in h.sent)


def test_restart_does_not_finalize_after_nullify() -> None:
    h = _Harness()
    h.take(h.replica.start(h.now))
    h.now += 1_000
    h.take(h.replica.on_timer(Timer(TimerKind.LEADER, 1, h.now), h.now))
    assert any(v.kind == VoteKind.NULLIFY and v.view == 1 for v in h.wal)
    h.restart()
    a = h.block(1, b"a")
    h.now += 20
    h.take(h.replica.on_message(1, h.proposal(a), h.now))
    h.take(h.replica.on_message(2, h.cert(VoteKind.NOTARIZE, 1, a.hash, (1, 2, 3)), h.now))
    assert h.my_votes(VoteKind.FINALIZE, 1) == set()
    assert h.my_votes(VoteKind.NOTARIZE, 1) == set()
    assert h.replica.view == 2  # the notarization still moves it on


def test_restart_does_not_nullify_after_finalize() -> None:
    h = _Harness()
    h.take(h.replica.start(h.now))
    a = h.block(1, b"a")
    h.now += 20
    h.take(h.replica.on_message(1, h.proposal(a), h.now))
    h.take(h.replica.on_message(2, h.cert(VoteKind.NOTARIZE, 1, a.hash, (1, 2, 3)), h.now))
    assert h.my_votes(VoteKind.FINALIZE, 1) == {a.hash}
    h.restart()
    for kind in (TimerKind.LEADER, TimerKind.VIEW):
        h.now += 1_500
        h.take(h.replica.on_timer(Timer(kind, 1, h.now), h.now))
    assert not any(v.kind == VoteKind.NULLIFY and v.view == 1 for v in h.wal)


# ------------------------------------------------------------ replica bugs found by the simulator
#
# Each of these reproduced a defect in consensus/replica.py that the sweep found (the
# docstrings give the diagnosis). They failed until the replica was fixed and stay as
# regression tests.


def test_replica_bug_pending_excludes_block_finalized_in_same_step() -> None:
    """A leader that finalizes the parent and proposes in the same step re-proposes the
    parent's transactions: `pending` is empty (the parent is the replica's finalized tip)
    but the host has not yet handed that finalized block to the application."""
    h = _Harness(me=2)  # validator 2 leads view 2
    assert h.vset.leader(2) == 2
    app = h.replica.app
    assert isinstance(app, MempoolApp)
    tx = b"the-one-tx"
    app.mempool.add(tx)
    h.take(h.replica.start(h.now))
    h.now += 20
    # The proposal for view 1 carrying tx, then straight away its finalization certificate.
    a = Block(1, 1, GENESIS.hash, h.now, 1, chain_app_hash(GENESIS), (tx,))
    h.take(h.replica.on_message(1, h.proposal(a), h.now))
    out = h.take(h.replica.on_message(1, h.cert(VoteKind.FINALIZE, 1, a.hash, (0, 1, 3)), h.now))
    assert [f.block.hash for f in out.finalized] == [a.hash]
    proposals = [m.block for _, m in out.messages if isinstance(m, Proposal) and m.block.proposer == 2]
    assert proposals, "validator 2 should propose for view 2 right away"
    assert tx_id(tx) not in {tx_id(t) for t in proposals[0].txs}, "re-proposed a transaction just finalized"


def test_replica_bug_restarted_node_resends_recovered_nullify() -> None:
    """A node logs nullify for view 1 and crashes before sending it. After restart it must
    still get that vote out (peers may need it for the nullification), but the recovered
    `my_nullify` makes `_nullify()` return False, so no NULLIFY_RETRY is ever armed."""
    h = _Harness()
    h.take(h.replica.start(h.now))
    h.advance(1_000)  # LEADER timeout: nullify view 1
    mine = [v for v in h.wal if v.kind == VoteKind.NULLIFY and v.view == 1]
    assert mine
    h.restart()  # crashed after logging, before sending: drop what was "sent" so far
    h.sent = []
    h.advance(5_000)
    resent = [m for m in h.sent if isinstance(m, VoteMsg) and m.vote == mine[0]]
    assert resent, "the recovered nullify for view 1 is never sent"


def test_replica_bug_restarted_nodes_stall_without_their_recovered_nullifies() -> None:
    """System-level form of the bug above: two nodes log nullify for view 1 and crash
    before sending it; with one silent Byzantine validator every honest vote is needed,
    so view 1 is never nullified and the chain stalls forever."""
    cfg = ScenarioConfig(
        name="restart-nullify",
        duration_ms=9_000,
        heal_ms=2_500,
        latency_ms=(10, 30),
        byzantine=(Byzantine(1, ByzKind.WITHHOLD),),
        crashes=(Crash(0, 500, 2_000, mid_output=True), Crash(2, 500, 2_000, mid_output=True)),
    )
    _assert_ok(run_scenario(1, 4, cfg))


def test_replica_bug_restarted_node_never_recovers_old_nullification() -> None:
    """Node 0 is down for good, so all of 1, 2, 3 are needed. View 4 (leader 0) is
    nullified; node 3 crashes in view 5 right after logging its notarize (before sending
    it) and restarts 300 ms later, having lost the nullification certificate of view 4.
    View 5 is not notarized, so every later proposal extends the block of view 3 and
    needs the nullifications of views 4, 5, ...; node 3 can never vote for (or propose)
    one, because nothing ever re-sends view 4's certificate: `_push_entry_certificate`
    only covers [view-1, view) on NULLIFY_RETRY (which fires only if a view lasts 2 s),
    and Status only triggers a push to a peer in an *older* view. The chain stalls."""
    cfg = ScenarioConfig(
        name="old-nullification",
        duration_ms=12_000,
        heal_ms=3_000,
        latency_ms=(30, 30),
        start_jitter_ms=0,
        crashes=(Crash(0, 0, None), Crash(3, 1_362, 1_662, mid_output=True)),
        tx_interval_ms=(10_000, 10_000),
    )
    _assert_ok(run_scenario(0, 4, cfg))


def test_replica_bug_restarted_node_withholds_recovered_notarize() -> None:
    """Node 0 notarizes view 1, sees the notarization, votes finalize and moves to view 2,
    then crashes before sending any of that. After restart it is in view 2 (from its
    finalize vote) without the certificate. A peer still in view 1 that never got node
    0's notarize vote needs that vote (or the certificate) to leave view 1: the restarted
    node must hand over one of them when the peer reports an older view, but it only
    re-sends certificates it has (none) and never its recovered votes."""
    h = _Harness()
    h.take(h.replica.start(h.now))
    a = h.block(1, b"a")
    h.now += 20
    h.take(h.replica.on_message(1, h.proposal(a), h.now))
    h.take(h.replica.on_message(3, h.cert(VoteKind.NOTARIZE, 1, a.hash, (0, 1, 3)), h.now))
    assert h.my_votes(VoteKind.FINALIZE, 1) == {a.hash}
    h.sent = []  # the crash hit before any of this was sent
    h.restart()
    assert h.replica.view == 2
    h.now += 50
    for _ in range(3):
        h.take(h.replica.on_message(2, Status(1, 0), h.now))
        h.advance(1_000)
    helps = [
        m
        for m in h.sent
        if (isinstance(m, VoteMsg) and m.vote.signer == 0 and m.vote.view == 1)
        or (isinstance(m, CertificateMsg) and m.cert.view == 1)
    ]
    assert helps, "a peer stuck in view 1 gets neither node 0's view-1 votes nor a view-1 certificate"


def test_replica_bug_restarted_node_withholds_recovered_votes_in_sim() -> None:
    """System-level form of the bug above (found by the sweep: mixed, n=4, seed 5901)."""
    cfg = ScenarioConfig(
        name="mixed-5901",
        duration_ms=10_142,
        heal_ms=4_142,
        latency_ms=(21, 94),
        loss=0.2,
        crashes=(Crash(1, 1_570, 3_568, mid_output=True),),
        byzantine=(Byzantine(2, ByzKind.WITHHOLD, votes_only=True),),
    )
    _assert_ok(run_scenario(5901, 4, cfg))
