"""What the pure Simplex replica consumes and produces.

The replica never does I/O. A host (the node process, or the simulator) feeds it
messages, timer firings and the current time, and carries out its `Output`:

1. persist `Output.blocks` and append `Output.wal` votes to the write-ahead log
   and fsync, *then*
2. send `Output.messages` (dest None = broadcast to every other validator),
3. schedule `Output.timers` (call `Replica.on_timer(timer, now)` at `deadline_ms`),
4. persist and hand `Output.finalized` to the application, in height order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Protocol

from consensus.messages import Message
from consensus.types import Block, Certificate, Vote


class TimerKind(IntEnum):
    LEADER = 1  # no proposal seen in time: nullify
    VIEW = 2  # view not notarized/nullified in time: nullify
    NULLIFY_RETRY = 3  # re-broadcast our nullify and certificates while stuck
    STATUS = 4  # periodic status/sync heartbeat
    PROPOSE_RETRY = 5  # leader waiting for its application to be ready


@dataclass(frozen=True, slots=True)
class Timer:
    kind: TimerKind
    view: int
    deadline_ms: int


@dataclass(frozen=True, slots=True)
class Finalized:
    """A finalized block and the finalization certificate that finalized it
    (for an ancestor finalized implicitly, the certificate of its descendant)."""

    block: Block
    proof: Certificate


@dataclass(slots=True)
class Output:
    messages: list[tuple[int | None, Message]] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    wal: list[Vote] = field(default_factory=list)
    finalized: list[Finalized] = field(default_factory=list)
    # Blocks we are about to vote for: persisted with the votes, so that after a crash of
    # every validator the blocks that the recovered votes certify still exist somewhere.
    blocks: list[Block] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.messages.extend(other.messages)
        self.timers.extend(other.timers)
        self.wal.extend(other.wal)
        self.finalized.extend(other.finalized)
        self.blocks.extend(other.blocks)


class Verdict(Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    WAIT = "wait"  # e.g. data not yet available locally; the host calls Replica.on_app_ready later


class Application(Protocol):
    """The replicated application as consensus sees it (the mempool and, later, the ledger)."""

    def build_payload(
        self, parent: Block, pending: tuple[Block, ...], now_ms: int
    ) -> tuple[tuple[bytes, ...], bytes] | None:
        """Transactions and the app hash for a new block on `parent`; None if not ready yet.

        `pending` holds the notarized but not yet finalized ancestors, oldest first,
        ending with `parent` (empty when `parent` is the finalized tip), so the
        application can leave out transactions already on the way to finality.
        """
        ...

    def verify_block(self, block: Block, parent: Block) -> Verdict:
        """Application-level validity of a proposed block (app hash, tx validity, data availability)."""
        ...


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    leader_timeout_ms: int = 1_000
    view_timeout_ms: int = 1_500
    nullify_retry_ms: int = 1_000
    status_interval_ms: int = 1_000
    propose_retry_ms: int = 20
    sync_batch: int = 128
    # Views kept in memory behind the last finalized view (for late votes, evidence).
    keep_views: int = 64


class FinalizedStore(Protocol):
    """Read access to the finalized chain; the host appends `Output.finalized` to it."""

    def last_height(self) -> int:
        """Height of the last finalized block (0 when only genesis exists)."""
        ...

    def get(self, height: int) -> Finalized | None:
        """The finalized block at `height` with its proof; None if unknown (height 0 = genesis)."""
        ...
