"""`git receive-pack`, independent of the transport: commands and pack in, report-status out.

In the style of dulwich's handler/backend split: `ReceivePack` reads a push request (the
ref update commands, then the pack) from any binary stream, validates the pack and
quarantines it (`receive_pack`: nothing becomes visible), asks a `RefDecider` what
becomes of each ref, and writes git's answer: progress on side-band 2, keepalives while
the decision is pending, and the report-status (`unpack ok`, `ok <ref>` / `ng <ref>
<reason>`). Smart HTTP (`api.git_http`) only spools the request body and streams the
answer; another transport would do the same.

The decider is the ledger: it orders the push and answers once it is final. Ref names,
objects, permissions and branch protection are its to decide, so this handler refuses
nothing of its own except a request or pack that is malformed, too large, or incomplete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from adapters.git.packs import PackRejected, PackTooLarge, ReceivedPack, receive_pack
from adapters.git.protocol import (
    ProtocolViolation,
    PushCommands,
    RefUpdate,
    progress_message,
    read_commands,
    report_status,
)
from adapters.git.store import GitStore

log = logging.getLogger(__name__)

KEEPALIVE_S = 5.0
INTERNAL_ERROR = "internal error while processing the push"
#: Pushes still being decided, also after their client left (asyncio keeps only weak references).
_RUNNING: set[asyncio.Future[PushResult]] = set()


@dataclass(frozen=True, slots=True)
class PushResult:
    """What became of a push: a verdict per ref (None = accepted, else git's reason), and the
    log position of the decision (None when nothing was submitted, e.g. refused early)."""

    verdicts: tuple[tuple[str, str | None], ...]
    position: int | None = None

    @staticmethod
    def every(updates: Sequence[RefUpdate], reason: str | None) -> PushResult:
        return PushResult(tuple((u.ref, reason) for u in updates))


#: The ledger side: `decide(updates, pack, atomic)` orders the push and answers once final.
RefDecider = Callable[[Sequence[RefUpdate], ReceivedPack | None, bool], Awaitable[PushResult]]


@dataclass(frozen=True)
class Unpacked:
    """A push request after its pack was checked: the commands, and the pack or why it failed."""

    commands: PushCommands
    pack: ReceivedPack | None = None
    unpack_error: str | None = None


class MalformedPush(Exception):
    """The request is not a receive-pack request (the transport answers 400)."""


@dataclass
class ReceivePack:
    store: GitStore
    repo_id: str
    decide: RefDecider
    max_pack_bytes: int
    fsck: bool = True
    keepalive_s: float = KEEPALIVE_S

    def unpack(self, stream: BinaryIO, too_large: bool = False) -> Unpacked:
        """Read the commands and quarantine the pack (blocking: run it in a worker thread).

        `too_large`: the transport cut the request off at the pack size limit.
        """
        try:
            commands = read_commands(stream)
        except ProtocolViolation as exc:
            raise MalformedPush(f"malformed receive-pack request: {exc}") from None
        if not commands.updates:
            return Unpacked(commands)
        if too_large:
            return Unpacked(commands, unpack_error=str(PackTooLarge(self.max_pack_bytes)))
        start = stream.tell()
        has_pack = bool(stream.read(1))
        stream.seek(start)
        if not has_pack:
            return Unpacked(commands)
        try:
            pack = receive_pack(
                self.store, self.repo_id, stream, max_bytes=self.max_pack_bytes, fsck=self.fsck
            )
        except PackRejected as exc:
            return Unpacked(commands, unpack_error=str(exc))
        return Unpacked(commands, pack)

    async def respond(self, unpacked: Unpacked) -> AsyncIterator[bytes]:
        """git's answer to the push, as it becomes known (progress, keepalives, report-status)."""
        commands = unpacked.commands
        side_band = commands.side_band
        updates = commands.updates
        if unpacked.unpack_error is not None:
            if side_band:
                yield progress_message(f"error: {unpacked.unpack_error}\n")
            if commands.report_status:
                failed = [(u.ref, "unpacker error") for u in updates]
                yield report_status(unpacked.unpack_error, failed, side_band=side_band)
            return
        pack = unpacked.pack
        if side_band and pack is not None and not commands.quiet:
            yield progress_message(
                f"Stele: pack sha256:{pack.digest[:16]} ({pack.object_count} objects) received\n"
            )
        task = asyncio.ensure_future(self.decide(updates, pack, commands.atomic))
        _RUNNING.add(task)  # a client that hangs up does not cancel a push already submitted
        task.add_done_callback(_RUNNING.discard)
        while not task.done():
            await asyncio.wait({task}, timeout=self.keepalive_s)
            if not task.done() and side_band:
                yield b"0005\x01"  # side-band keepalive: an empty data packet
        result = self._result(task, updates)
        if side_band and result.position is not None and not commands.quiet:
            yield progress_message(f"Stele: decided at log position {result.position}\n")
        if commands.report_status:
            verdicts = dict(result.verdicts)
            report = [(u.ref, verdicts.get(u.ref, "no result for this ref")) for u in updates]
            yield report_status(None, report, side_band=side_band)

    @staticmethod
    def _result(task: asyncio.Future[PushResult], updates: Sequence[RefUpdate]) -> PushResult:
        try:
            return task.result()
        except Exception:
            log.exception("deciding the push failed")
            return PushResult.every(updates, INTERNAL_ERROR)
