"""Mempool and MempoolApp: dedupe, bounds, FIFO batches, exclusion, committed ids, block checks."""

from __future__ import annotations

import pytest

from consensus.interface import Application, Verdict
from consensus.mempool import AddResult, Mempool, MempoolApp, chain_app_hash
from consensus.types import Block, Limits, genesis_block, sha256, tx_id


def txs(n: int, size: int = 10, prefix: bytes = b"tx") -> list[bytes]:
    return [(prefix + b"-%d-" % i).ljust(size, b".") for i in range(n)]


def test_add_returns_id_and_dedupes() -> None:
    m = Mempool()
    tx = b"hello"
    assert m.add(tx) == (AddResult.ADDED, tx_id(tx))
    assert m.add(tx) == (AddResult.DUPLICATE, tx_id(tx))
    assert len(m) == 1
    assert m.size_bytes == 5
    assert tx_id(tx) in m
    assert tx_id(b"other") not in m


def test_bounds_count_bytes_and_tx_size() -> None:
    m = Mempool(max_txs=3, max_bytes=25, max_tx_bytes=12)
    assert m.add(b"x" * 13)[0] is AddResult.TOO_LARGE
    assert m.add(b"a" * 10)[0] is AddResult.ADDED
    assert m.add(b"b" * 10)[0] is AddResult.ADDED
    assert m.add(b"c" * 10)[0] is AddResult.FULL  # 30 bytes > 25
    assert m.add(b"c" * 5)[0] is AddResult.ADDED
    assert m.size_bytes == 25
    assert m.add(b"d")[0] is AddResult.FULL  # count bound (and byte bound)
    assert len(m) == 3
    # Room comes back after a commit.
    m.remove_committed([b"a" * 10])
    assert m.size_bytes == 15
    assert m.add(b"d")[0] is AddResult.ADDED


def test_invalid_bounds_rejected() -> None:
    with pytest.raises(ValueError):
        Mempool(max_txs=0)


def test_take_batch_is_fifo_and_does_not_remove() -> None:
    m = Mempool()
    items = txs(10)
    for t in items:
        m.add(t)
    assert m.take_batch(max_txs=4, max_bytes=10_000) == tuple(items[:4])
    assert m.take_batch(max_txs=100, max_bytes=10_000) == tuple(items)
    assert len(m) == 10
    assert m.take_batch(max_txs=0, max_bytes=10_000) == ()


def test_take_batch_byte_limit_stops_in_order() -> None:
    m = Mempool()
    small, big, small2 = b"s" * 10, b"B" * 50, b"t" * 10
    for t in (small, big, small2):
        m.add(t)
    # `big` does not fit in the remaining room: the batch stops rather than jumping the queue.
    assert m.take_batch(max_txs=10, max_bytes=55) == (small,)
    assert m.take_batch(max_txs=10, max_bytes=70) == (small, big, small2)
    # A transaction that can never fit on its own is skipped, not a permanent blocker.
    assert m.take_batch(max_txs=10, max_bytes=20) == (small, small2)


def test_take_batch_exclusion() -> None:
    m = Mempool()
    items = txs(5)
    for t in items:
        m.add(t)
    excl = {tx_id(items[0]), tx_id(items[2])}
    assert m.take_batch(max_txs=10, max_bytes=1000, exclude=excl) == (items[1], items[3], items[4])
    assert m.take_batch(max_txs=2, max_bytes=1000, exclude=excl) == (items[1], items[3])


def test_committed_not_readded() -> None:
    m = Mempool()
    a, b = b"alpha", b"beta"
    m.add(a)
    m.remove_committed([a, b])  # b was never pending: it is still remembered as committed
    assert len(m) == 0 and m.size_bytes == 0
    assert m.add(a) == (AddResult.DUPLICATE, tx_id(a))
    assert m.add(b)[0] is AddResult.DUPLICATE
    assert m.committed_recently(tx_id(a))


def test_committed_ring_is_bounded() -> None:
    m = Mempool(recent_committed=3)
    items = txs(5)
    m.remove_committed(items)
    # Only the 3 most recent ids are remembered; the oldest two may come back.
    assert m.add(items[0])[0] is AddResult.ADDED
    assert m.add(items[1])[0] is AddResult.ADDED
    for t in items[2:]:
        assert m.add(t)[0] is AddResult.DUPLICATE


def test_fifo_after_removal() -> None:
    m = Mempool()
    items = txs(6)
    for t in items:
        m.add(t)
    m.remove_committed([items[1], items[4]])
    assert m.take_batch(max_txs=10, max_bytes=1000) == (items[0], items[2], items[3], items[5])
    assert m.size_bytes == sum(len(t) for t in items) - len(items[1]) - len(items[4])


# --- MempoolApp ---------------------------------------------------------------------------

LIMITS = Limits(max_tx_bytes=100, max_block_txs=4, max_block_bytes=250)
GENESIS = genesis_block("test-chain", 1_000)


def child(parent: Block, txs_: tuple[bytes, ...], app_hash: bytes | None = None, view: int = 1) -> Block:
    ah = chain_app_hash(parent) if app_hash is None else app_hash
    return Block(parent.height + 1, view, parent.hash, parent.timestamp_ms + 1, 0, ah, txs_)


def test_app_is_an_application() -> None:
    app: Application = MempoolApp(limits=LIMITS)
    assert app.build_payload(GENESIS, (), 2_000) == ((), chain_app_hash(GENESIS))


def test_chain_app_hash_commits_to_parent() -> None:
    b1 = child(GENESIS, (b"a",))
    assert chain_app_hash(GENESIS) == sha256(b"stele/txlog/v1" + GENESIS.app_hash + GENESIS.hash)
    assert chain_app_hash(b1) != chain_app_hash(GENESIS)
    b1_other = child(GENESIS, (b"b",))
    assert chain_app_hash(b1) != chain_app_hash(b1_other)


def test_build_payload_respects_limits_and_excludes_pending() -> None:
    app = MempoolApp(limits=LIMITS)
    items = txs(10, size=60)
    for t in items:
        app.mempool.add(t)
    got, ah = app.build_payload(GENESIS, (), 0) or ((), b"")
    assert ah == chain_app_hash(GENESIS)
    assert got == tuple(items[:4])  # 4 * 60 = 240 <= 250 and count limit 4
    b1 = child(GENESIS, tuple(items[:4]))
    b2 = child(b1, tuple(items[4:6]), view=2)
    got2, ah2 = app.build_payload(b2, (b1, b2), 0) or ((), b"")
    assert got2 == tuple(items[6:10])
    assert ah2 == chain_app_hash(b2)
    assert app.verify_block(child(b2, got2, view=3), b2) is Verdict.ACCEPT


def test_on_finalized_removes() -> None:
    app = MempoolApp(limits=LIMITS)
    items = txs(3)
    for t in items:
        app.mempool.add(t)
    app.on_finalized(child(GENESIS, (items[0], items[2])))
    assert len(app.mempool) == 1
    assert app.mempool.add(items[0])[0] is AddResult.DUPLICATE


@pytest.mark.parametrize(
    "block_txs, app_hash, verdict",
    [
        ((), None, Verdict.ACCEPT),
        ((b"a", b"b"), None, Verdict.ACCEPT),
        ((b"a",), b"\x01" * 32, Verdict.REJECT),  # wrong app hash
        ((b"a", b"b", b"a"), None, Verdict.REJECT),  # repeated tx id
        ((b"1", b"2", b"3", b"4", b"5"), None, Verdict.REJECT),  # too many txs
        ((b"x" * 101,), None, Verdict.REJECT),  # tx over max_tx_bytes
        ((b"x" * 100, b"y" * 100, b"z" * 51), None, Verdict.REJECT),  # block over max_block_bytes
        ((b"x" * 100, b"y" * 100, b"z" * 50), None, Verdict.ACCEPT),  # exactly at the limit
    ],
)
def test_verify_block(block_txs: tuple[bytes, ...], app_hash: bytes | None, verdict: Verdict) -> None:
    app = MempoolApp(limits=LIMITS)
    assert app.verify_block(child(GENESIS, block_txs, app_hash), GENESIS) is verdict


def test_verify_block_app_hash_bound_to_given_parent() -> None:
    app = MempoolApp(limits=LIMITS)
    b1 = child(GENESIS, (b"a",))
    b2 = child(b1, (b"b",), view=2)
    assert app.verify_block(b2, b1) is Verdict.ACCEPT
    # The same block judged against a different parent has the wrong app hash.
    assert app.verify_block(b2, GENESIS) is Verdict.REJECT
