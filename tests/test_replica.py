"""The replica on its own: crafted inputs in, votes, drops and finalized blocks out."""

from __future__ import annotations

from nacl.signing import SigningKey

from consensus.crypto import Signer, ValidatorSet
from consensus.interface import Finalized, Output, Timer, TimerKind, Verdict
from consensus.messages import BlockRequest, BlockResponse, CertificateMsg, Proposal, VoteMsg
from consensus.replica import Replica
from consensus.types import ZERO_HASH, Block, Certificate, Limits, Vote, VoteKind, genesis_block, sha256

CHAIN = "test-chain"
T0 = 1_000_000


class _App:
    def build_payload(self, parent: Block, pending: tuple[Block, ...], now_ms: int):
        return ((b"tx@%d" % now_ms,), ZERO_HASH)

    def verify_block(self, block: Block, parent: Block) -> Verdict:
        return Verdict.ACCEPT


class _Store:
    def __init__(self) -> None:
        self.items: dict[int, Finalized] = {}

    def last_height(self) -> int:
        return max(self.items, default=0)

    def get(self, height: int) -> Finalized | None:
        return self.items.get(height)


SEEDS = [sha256(b"replica-test-%d" % i) for i in range(4)]
VSET = ValidatorSet(CHAIN, tuple(sorted(bytes(SigningKey(s).verify_key) for s in SEEDS)))
SIGNERS = sorted((Signer(s, VSET) for s in SEEDS), key=lambda s: s.index)
GENESIS = genesis_block(CHAIN, T0 - 10_000)


def make(me: int = 0, votes: tuple[Vote, ...] = (), limits: Limits = Limits()) -> tuple[Replica, Output]:
    r = Replica(
        validators=VSET,
        signer=SIGNERS[me],
        app=_App(),
        store=_Store(),
        genesis=GENESIS,
        limits=limits,
        recovered_votes=votes,
    )
    return r, r.start(T0)


def block(
    view: int, parent: Block = GENESIS, ts: int | None = None, height: int | None = None, **kw: object
) -> Block:
    txs = kw.get("txs", (b"a",))
    assert isinstance(txs, tuple)
    return Block(
        parent.height + 1 if height is None else height,
        view,
        parent.hash,
        parent.timestamp_ms + 1 if ts is None else ts,
        VSET.leader(view),
        ZERO_HASH,
        txs,
    )


def propose(b: Block, signer: int | None = None) -> Proposal:
    s = SIGNERS[VSET.leader(b.view) if signer is None else signer]
    return Proposal(b, s.vote(VoteKind.NOTARIZE, b.view, b.hash).signature)


def cert(kind: VoteKind, view: int, h: bytes, signers: tuple[int, ...] = (1, 2, 3)) -> Certificate:
    return Certificate(kind, view, h, tuple((i, SIGNERS[i].vote(kind, view, h).signature) for i in signers))


def my_votes(out: Output, kind: VoteKind) -> list[Vote]:
    return [v for v in out.wal if v.kind == kind]


def test_votes_notarize_for_a_valid_proposal_and_logs_before_sending() -> None:
    r, _ = make()
    b = block(1)
    out = r.on_message(1, propose(b), T0)
    assert [v.block for v in my_votes(out, VoteKind.NOTARIZE)] == [b.hash]
    assert any(isinstance(m, VoteMsg) and m.vote.kind == VoteKind.NOTARIZE for _, m in out.messages)


def test_notarization_moves_view_and_votes_finalize_then_finalization_outputs_block() -> None:
    r, _ = make()
    b = block(1)
    r.on_message(1, propose(b), T0)
    out = r.on_message(2, CertificateMsg(cert(VoteKind.NOTARIZE, 1, b.hash)), T0)
    assert r.view == 2
    assert [v.block for v in my_votes(out, VoteKind.FINALIZE)] == [b.hash]
    out = r.on_message(3, CertificateMsg(cert(VoteKind.FINALIZE, 1, b.hash)), T0)
    assert [f.block for f in out.finalized] == [b]
    assert r.finalized_height == 1


def test_finalizing_a_block_finalizes_its_ancestors_in_order() -> None:
    r, _ = make()
    b1 = block(1)
    b2 = block(2, parent=b1)
    r.on_message(1, propose(b1), T0)
    r.on_message(2, CertificateMsg(cert(VoteKind.NOTARIZE, 1, b1.hash)), T0)
    r.on_message(2, propose(b2), T0)
    out = r.on_message(3, CertificateMsg(cert(VoteKind.FINALIZE, 2, b2.hash)), T0)
    assert [f.block.height for f in out.finalized] == [1, 2]
    assert all(f.proof.block == b2.hash for f in out.finalized)


def test_leader_timeout_nullifies_and_nullification_advances() -> None:
    r, _ = make()
    out = r.on_timer(Timer(TimerKind.LEADER, 1, T0 + 1000), T0 + 1000)
    assert len(my_votes(out, VoteKind.NULLIFY)) == 1
    r.on_message(2, CertificateMsg(cert(VoteKind.NULLIFY, 1, ZERO_HASH)), T0 + 1000)
    assert r.view == 2


def test_rejects_bad_timestamps() -> None:
    r, _ = make()
    out = r.on_message(1, propose(block(1, ts=GENESIS.timestamp_ms)), T0)
    assert r.dropped["bad_timestamp"] == 1 and not my_votes(out, VoteKind.NOTARIZE)
    assert len(my_votes(out, VoteKind.NULLIFY)) == 1  # an invalid proposal ends the view early
    r2, _ = make()
    out = r2.on_message(1, propose(block(1, ts=T0 + 60_000)), T0)
    assert r2.dropped["bad_timestamp"] == 1 and not my_votes(out, VoteKind.NOTARIZE)


def test_rejects_wrong_parent_height_and_non_leader() -> None:
    r, _ = make()
    out = r.on_message(1, propose(block(1, height=5)), T0)
    assert r.dropped["invalid_proposal"] == 1 and not my_votes(out, VoteKind.NOTARIZE)
    r2, _ = make()
    bad = Block(1, 1, GENESIS.hash, GENESIS.timestamp_ms + 1, 2, ZERO_HASH, ())  # proposer is not leader(1)
    r2.on_message(2, propose(bad, signer=2), T0)
    assert r2.dropped["invalid_proposal"] == 1


def test_unknown_parent_is_fetched_not_voted() -> None:
    r, _ = make()
    orphan = Block(1, 1, b"\x42" * 32, T0, 1, ZERO_HASH, ())
    out = r.on_message(1, propose(orphan), T0)
    assert not my_votes(out, VoteKind.NOTARIZE)
    assert any(type(m).__name__ == "BlockRequest" for _, m in out.messages)


def test_drops_bad_signatures_non_validators_duplicates_and_oversize() -> None:
    r, _ = make(limits=Limits(max_block_txs=2))
    b = block(1)
    good = SIGNERS[2].vote(VoteKind.NOTARIZE, 1, b.hash)
    forged = Vote(VoteKind.NOTARIZE, 1, b.hash, 2, b"\x01" * 64)
    r.on_message(2, VoteMsg(forged), T0)
    assert r.dropped["bad_signature"] == 1
    r.on_message(2, VoteMsg(good), T0)
    r.on_message(2, VoteMsg(good), T0)
    assert r.dropped["duplicate_vote"] == 1
    r.on_message(2, VoteMsg(Vote(VoteKind.NOTARIZE, 1, b.hash, 9, good.signature)), T0)
    assert r.dropped["non_validator_vote"] == 1
    r.on_message(7, VoteMsg(good), T0)
    assert r.dropped["unknown_sender"] == 1
    r.on_message(3, VoteMsg(good), T0)
    assert r.dropped["relayed_vote"] == 1
    r.on_message(1, propose(block(1, txs=(b"1", b"2", b"3"))), T0)
    assert r.dropped["oversized_block"] == 1
    bad_cert = Certificate(
        VoteKind.NOTARIZE, 1, b.hash, ((1, b"\x00" * 64), (2, good.signature), (3, b"\x00" * 64))
    )
    r.on_message(1, CertificateMsg(bad_cert), T0)
    assert r.dropped["bad_certificate"] == 1 and r.view == 1


def test_equivocation_is_recorded_as_evidence() -> None:
    r, _ = make()
    a, b = block(1), block(1, txs=(b"other",))
    r.on_message(1, propose(a), T0)
    r.on_message(1, propose(b), T0)
    assert len(r.evidence) == 1
    first, second = r.evidence[0]
    assert first.signer == second.signer == 1 and {first.block, second.block} == {a.hash, b.hash}


def test_restart_from_wal_never_signs_a_conflicting_vote() -> None:
    r, _ = make()
    a = block(1)
    out = r.on_message(1, propose(a), T0)
    logged = tuple(out.wal)
    # Crash; a new replica rebuilt from the WAL is offered a different block for view 1.
    r2, _ = make(votes=logged)
    assert r2.view == 1
    out = r2.on_message(1, propose(block(1, txs=(b"conflict",))), T0)
    assert not my_votes(out, VoteKind.NOTARIZE)
    # It also will not finalize in a view it nullified before the crash.
    r3, _ = make()
    nullified = tuple(r3.on_timer(Timer(TimerKind.LEADER, 1, T0), T0).wal)
    r4, _ = make(votes=nullified)
    out = r4.on_message(2, CertificateMsg(cert(VoteKind.NOTARIZE, 1, a.hash)), T0)
    assert not my_votes(out, VoteKind.FINALIZE)
    assert r4.view == 2


def test_leader_proposes_on_the_notarized_parent() -> None:
    r, _ = make(me=2)  # leader of view 2
    b1 = block(1)
    r.on_message(1, propose(b1), T0)
    out = r.on_message(3, CertificateMsg(cert(VoteKind.NOTARIZE, 1, b1.hash)), T0 + 5)
    props = [m for _, m in out.messages if isinstance(m, Proposal)]
    assert len(props) == 1
    nb = props[0].block
    assert (nb.view, nb.height, nb.parent, nb.proposer) == (2, 2, b1.hash, 2)
    assert nb.timestamp_ms > b1.timestamp_ms
    assert [v.block for v in my_votes(out, VoteKind.NOTARIZE)] == [nb.hash]


def test_blocks_finalized_in_the_same_event_count_as_pending_for_the_next_proposal() -> None:
    """The host learns of a finalized block only after the event; the app must still exclude its txs."""
    seen: list[tuple[Block, ...]] = []

    class Recording(_App):
        def build_payload(self, parent: Block, pending: tuple[Block, ...], now_ms: int):
            seen.append(pending)
            return super().build_payload(parent, pending, now_ms)

    r = Replica(
        validators=VSET, signer=SIGNERS[2], app=Recording(), store=_Store(), genesis=GENESIS
    )  # leader of view 2
    r.start(T0)
    b1 = block(1)
    r.on_message(1, propose(b1), T0)
    # A finalization of view 1 arrives before its notarization: finalize b1, enter view 2, propose.
    out = r.on_message(3, CertificateMsg(cert(VoteKind.FINALIZE, 1, b1.hash)), T0 + 5)
    assert [f.block for f in out.finalized] == [b1]
    assert any(isinstance(m, Proposal) for _, m in out.messages)
    assert seen and seen[-1] == (b1,)


def test_forged_certificates_allocate_nothing_and_impossible_heights_are_dropped() -> None:
    r, _ = make()
    views_before = len(r._views)
    forged = Certificate(VoteKind.NULLIFY, 10**9, ZERO_HASH, tuple((i, b"\x05" * 64) for i in (0, 1, 2)))
    for _ in range(50):
        r.on_message(1, CertificateMsg(forged), T0)
    assert r.dropped["bad_certificate"] == 50
    assert len(r._views) == views_before
    far = Block(10**12, 1, GENESIS.hash, GENESIS.timestamp_ms + 1, 1, ZERO_HASH, ())
    r.on_message(1, propose(far), T0)
    assert r.dropped["invalid_proposal"] == 1 and far.hash not in r.blocks


def test_blocks_voted_for_survive_a_restart() -> None:
    """Output.blocks carries what we vote for; a replica rebuilt with them can still serve it."""
    r, _ = make()
    b = block(1)
    out = r.on_message(1, propose(b), T0)
    assert out.blocks == [b] and [v.block for v in my_votes(out, VoteKind.NOTARIZE)] == [b.hash]
    r2 = Replica(
        validators=VSET,
        signer=SIGNERS[0],
        app=_App(),
        store=_Store(),
        genesis=GENESIS,
        recovered_votes=tuple(out.wal),
        recovered_blocks=tuple(out.blocks),
    )
    r2.start(T0)
    served = r2.on_message(2, BlockRequest((b.hash,)), T0)
    assert any(isinstance(m, BlockResponse) and m.blocks == (b,) for _, m in served.messages)
