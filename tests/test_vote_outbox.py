"""Messages leave only after the votes they carry are fsynced, in order, and the loop never waits.

The log is a real `VoteLog` on disk; a gate holds its appends (as a busy disk would hold an
fsync) so the tests can see what is sent while a write is in progress.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from adapters.vote_outbox import VoteOutbox
from consensus.crypto import Signer, ValidatorSet
from consensus.messages import Message, Status, VoteMsg
from consensus.types import ZERO_HASH, Vote, VoteKind
from consensus.wal import VoteLog

SEEDS = [bytes([i + 1]) * 32 for i in range(4)]


class GatedLog(VoteLog):
    """A real vote log whose appends wait for `gate` (a disk that is slow to fsync)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail: BaseException | None = None

    def append(self, votes: Iterable[Vote]) -> None:
        self.entered.set()
        assert self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        super().append(votes)


def _votes(n: int) -> list[Vote]:
    signer = _signer()
    return [signer.vote(VoteKind.NULLIFY, view, ZERO_HASH) for view in range(1, n + 1)]


def _signer() -> Signer:
    from nacl.signing import SigningKey

    vset = ValidatorSet("outbox-test", tuple(sorted(bytes(SigningKey(s).verify_key) for s in SEEDS)))
    return Signer(SEEDS[0], vset)


async def _until(pred: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_messages_wait_for_their_votes_and_keep_their_order(tmp_path: Path) -> None:
    wal = GatedLog(tmp_path / "votes.wal")
    sent: list[tuple[int | None, Message]] = []
    errors: list[BaseException] = []
    v1, v2, v3 = _votes(3)

    async def scenario() -> None:
        outbox = VoteOutbox(wal, lambda d, m: sent.append((d, m)), errors.append)
        outbox.submit([v1], [(None, VoteMsg(v1))])
        await asyncio.to_thread(wal.entered.wait, 5)
        # While the first fsync hangs, the loop goes on; later output queues behind it.
        outbox.submit([], [(2, Status(1, 1))])
        outbox.submit([v2], [(None, VoteMsg(v2))])
        outbox.submit([v3], [(None, VoteMsg(v3))])
        await asyncio.sleep(0)
        assert sent == [] and outbox.pending == 3
        wal.gate.set()
        await _until(lambda: len(sent) == 4)
        assert sent == [(None, VoteMsg(v1)), (2, Status(1, 1)), (None, VoteMsg(v2)), (None, VoteMsg(v3))]
        assert outbox.stats["fsyncs"] == 2  # v2 and v3 were logged together
        assert outbox.stats["batches_grouped"] == 4
        outbox.compact(min_view=3)
        await _until(lambda: outbox.pending == 0 and outbox._task is None)
        outbox.submit([], [(1, Status(2, 2))])  # nothing pending: sent at once
        assert sent[-1] == (1, Status(2, 2))
        await outbox.close()

    asyncio.run(scenario())
    assert errors == []
    assert [v.view for v in VoteLog(tmp_path / "votes.wal").votes] == [3]  # durable, and compacted


def test_a_log_that_cannot_be_written_sends_nothing_and_halts(tmp_path: Path) -> None:
    wal = GatedLog(tmp_path / "votes.wal")
    wal.fail = OSError(28, "No space left on device")
    wal.gate.set()
    sent: list[tuple[int | None, Message]] = []
    errors: list[BaseException] = []
    (v1,) = _votes(1)

    async def scenario() -> None:
        outbox = VoteOutbox(wal, lambda d, m: sent.append((d, m)), errors.append)
        outbox.submit([v1], [(None, VoteMsg(v1))])
        outbox.submit([], [(2, Status(1, 1))])
        await _until(lambda: bool(errors))
        outbox.submit([], [(3, Status(1, 1))])  # after the failure nothing leaves
        await outbox.close()

    asyncio.run(scenario())
    assert sent == []
    assert isinstance(errors[0], OSError) and "No space left" in str(errors[0])


@pytest.mark.parametrize("n", [1, 50])
def test_everything_submitted_is_logged_before_it_is_sent(tmp_path: Path, n: int) -> None:
    wal = VoteLog(tmp_path / "votes.wal")
    logged_when_sent: list[int] = []
    votes = _votes(n)

    def send(dest: int | None, msg: Message) -> None:
        assert isinstance(msg, VoteMsg)
        logged_when_sent.append(len(VoteLog(tmp_path / "votes.wal").votes))

    async def scenario() -> None:
        outbox = VoteOutbox(wal, send, lambda exc: None)
        for v in votes:
            outbox.submit([v], [(None, VoteMsg(v))])
        await _until(lambda: len(logged_when_sent) == n)
        await outbox.close()

    asyncio.run(scenario())
    assert all(count >= i + 1 for i, count in enumerate(logged_when_sent))
