"""Consensus messages leave only once the votes they carry are durable, without the event loop
waiting for the disk.

A validator must write its votes to its write-ahead log and fsync them before any message
carrying them is sent (so that after a crash it never votes twice in a view). An fsync can
take long when the disk is busy (a large push being written, on a file system that flushes
other files' data with it), and the event loop that runs consensus, P2P and the API must
not stall meanwhile. So `VoteOutbox` does the appends and fsyncs on its own thread:

- each batch of the replica's output (votes to log, messages to send) is queued in order;
- the thread logs every queued vote with one fsync (group commit), then the messages of
  those batches are sent, in the order the replica produced them;
- a batch without votes still waits behind earlier ones, so no message overtakes another;
- compaction of the log goes through the same queue, never beside an append.

A failure to write the log stops the node (the caller's `on_error`): going on could mean
voting twice after a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from consensus.messages import Message
from consensus.types import Vote
from consensus.wal import VoteLog

log = logging.getLogger(__name__)

Send = Callable[[int | None, Message], None]


@dataclass
class _Batch:
    votes: list[Vote] = field(default_factory=list)
    messages: list[tuple[int | None, Message]] = field(default_factory=list)
    compact_below: int | None = None  # a compaction of views below this, instead of votes


class VoteOutbox:
    def __init__(self, wal: VoteLog, send: Send, on_error: Callable[[BaseException], None]) -> None:
        self._wal = wal
        self._send = send
        self._on_error = on_error
        self._queue: deque[_Batch] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.stats = {"fsyncs": 0, "votes_logged": 0, "batches_grouped": 0}

    def submit(self, votes: Sequence[Vote], messages: Sequence[tuple[int | None, Message]]) -> None:
        """Log `votes`, then send `messages` (at once when nothing is pending and nothing to log)."""
        if self._closed:
            return
        if not votes and not self._queue and self._task is None:
            for dest, msg in messages:
                self._send(dest, msg)
            return
        self._queue.append(_Batch(list(votes), list(messages)))
        self._start()

    def compact(self, min_view: int) -> None:
        """Drop logged votes below `min_view`, in order with the appends."""
        if self._closed:
            return
        self._queue.append(_Batch(compact_below=min_view))
        self._start()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue and not self._closed:
                batches: list[_Batch] = []
                while self._queue and self._queue[0].compact_below is None:
                    batches.append(self._queue.popleft())
                if batches:
                    votes = [v for b in batches for v in b.votes]
                    if votes:
                        await asyncio.to_thread(self._wal.append, votes)
                        self.stats["fsyncs"] += 1
                        self.stats["votes_logged"] += len(votes)
                        self.stats["batches_grouped"] += len(batches)
                    if self._closed:
                        return
                    for b in batches:
                        for dest, msg in b.messages:
                            self._send(dest, msg)
                if self._queue and self._queue[0].compact_below is not None:
                    min_view = self._queue.popleft().compact_below
                    assert min_view is not None
                    await asyncio.to_thread(self._wal.compact, min_view)
        except Exception as exc:  # the log could not be written: never send unlogged votes
            self._closed = True
            self._queue.clear()
            log.critical("writing the vote log failed: %s", exc)
            self._on_error(exc)
        finally:
            self._task = None
            if self._queue and not self._closed:
                self._start()

    def abort(self) -> None:
        """Send nothing more (the node halted)."""
        self._closed = True
        self._queue.clear()

    async def close(self) -> None:
        """Stop sending; wait for an append or compaction in progress (the log stays consistent)."""
        self._closed = True
        self._queue.clear()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), 10)
            except (TimeoutError, asyncio.CancelledError):
                pass
