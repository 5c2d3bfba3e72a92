"""The vote WAL and the finalized block store survive restarts and torn writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.interface import Finalized
from consensus.store import BlockStore
from consensus.types import ZERO_HASH, Block, Certificate, Vote, VoteKind, genesis_block
from consensus.wal import VoteLog


def _vote(view: int, kind: VoteKind = VoteKind.NOTARIZE) -> Vote:
    return Vote(kind, view, bytes([view % 256]) * 32 if kind != VoteKind.NULLIFY else ZERO_HASH, 1, b"s" * 64)


def test_wal_recovers_votes_after_reopen(tmp_path: Path) -> None:
    log = VoteLog(tmp_path / "votes.wal")
    log.append([_vote(1), _vote(2, VoteKind.NULLIFY)])
    log.append([_vote(3, VoteKind.FINALIZE)])
    log.close()
    again = VoteLog(tmp_path / "votes.wal")
    assert again.votes == [_vote(1), _vote(2, VoteKind.NULLIFY), _vote(3, VoteKind.FINALIZE)]


def test_wal_cuts_torn_tail_and_keeps_appending(tmp_path: Path) -> None:
    path = tmp_path / "votes.wal"
    log = VoteLog(path)
    log.append([_vote(1), _vote(2)])
    log.close()
    data = path.read_bytes()
    path.write_bytes(data + data[:10])  # a partial record, as after a crash mid-write
    log = VoteLog(path)
    assert log.votes == [_vote(1), _vote(2)]
    log.append([_vote(3)])
    log.close()
    assert VoteLog(path).votes == [_vote(1), _vote(2), _vote(3)]


def test_wal_rejects_corrupted_record(tmp_path: Path) -> None:
    path = tmp_path / "votes.wal"
    log = VoteLog(path)
    log.append([_vote(1), _vote(2)])
    log.close()
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip a bit in the last record's signature: CRC mismatch
    path.write_bytes(bytes(data))
    assert VoteLog(path).votes == [_vote(1)]


def test_wal_compaction_keeps_recent_views(tmp_path: Path) -> None:
    path = tmp_path / "votes.wal"
    log = VoteLog(path)
    log.append([_vote(v) for v in range(1, 11)])
    log.compact(min_view=8)
    log.append([_vote(11)])
    log.close()
    assert [v.view for v in VoteLog(path).votes] == [8, 9, 10, 11]


def _chain(n: int) -> list[Finalized]:
    parent = genesis_block("t", 0)
    out = []
    for h in range(1, n + 1):
        b = Block(h, h, parent.hash, h, 0, ZERO_HASH, (b"tx%d" % h,))
        out.append(Finalized(b, Certificate(VoteKind.FINALIZE, h, b.hash, ((0, b"x" * 64),))))
        parent = b
    return out


def test_block_store_round_trip_and_order(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "blocks.sqlite")
    chain = _chain(5)
    store.append(chain[:3])
    with pytest.raises(ValueError):
        store.append(chain[4:])
    store.append(chain[3:])
    store.close()
    again = BlockStore(tmp_path / "blocks.sqlite")
    assert again.last_height() == 5
    assert again.get(4) == chain[3]
    assert again.get(0) is None and again.get(6) is None
    assert again.height_of(chain[2].block.hash) == 3
