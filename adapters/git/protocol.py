"""The receive-pack side of the git wire protocol: ref update commands in, report-status out.

Pkt-lines are read and written with dulwich's `Protocol` helpers; this module only gives
the commands and the report their Stele shapes (`RefUpdate`, `(ref, reason | None)`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import BinaryIO

from dulwich.errors import GitProtocolError, HangupException
from dulwich.protocol import (
    CAPABILITIES_REF,
    CAPABILITY_AGENT,
    CAPABILITY_ATOMIC,
    CAPABILITY_DELETE_REFS,
    CAPABILITY_OFS_DELTA,
    CAPABILITY_QUIET,
    CAPABILITY_REPORT_STATUS,
    CAPABILITY_SIDE_BAND_64K,
    SIDE_BAND_CHANNEL_DATA,
    SIDE_BAND_CHANNEL_PROGRESS,
    Protocol,
    extract_capabilities,
    format_ref_line,
    pkt_line,
    symref_capabilities,
)
from dulwich.refs import Ref, check_ref_format

ZERO_SHA = "0" * 40
_SHA = re.compile(r"^[0-9a-f]{40}$")
#: What Stele's receive-pack offers. No push-options, no report-status-v2, no shallow.
RECEIVE_CAPABILITIES: tuple[bytes, ...] = (
    CAPABILITY_REPORT_STATUS,
    CAPABILITY_DELETE_REFS,
    CAPABILITY_SIDE_BAND_64K,
    CAPABILITY_QUIET,
    CAPABILITY_ATOMIC,
    CAPABILITY_OFS_DELTA,
    CAPABILITY_AGENT + b"=stele/0.1",
    b"object-format=sha1",
)
#: The largest ref-command section accepted before the pack (GitHub's limit is far lower).
MAX_COMMANDS_BYTES = 4 * 1024 * 1024


class ProtocolViolation(Exception):
    """The client sent something that is not a receive-pack request."""


@dataclass(frozen=True, slots=True)
class RefUpdate:
    """One `old new ref` command of a push: old None creates the ref, new None deletes it."""

    ref: str
    old: str | None
    new: str | None

    @property
    def is_delete(self) -> bool:
        return self.new is None


@dataclass(frozen=True, slots=True)
class PushCommands:
    updates: tuple[RefUpdate, ...]
    capabilities: frozenset[bytes]

    @property
    def side_band(self) -> bool:
        return CAPABILITY_SIDE_BAND_64K in self.capabilities

    @property
    def report_status(self) -> bool:
        return CAPABILITY_REPORT_STATUS in self.capabilities

    @property
    def atomic(self) -> bool:
        return CAPABILITY_ATOMIC in self.capabilities

    @property
    def quiet(self) -> bool:
        return CAPABILITY_QUIET in self.capabilities


def valid_sha(value: str) -> bool:
    return _SHA.match(value) is not None


def valid_ref_name(ref: str) -> bool:
    """A full ref name git itself would accept for a push (`refs/...`, check-ref-format rules)."""
    try:
        raw = ref.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return ref.startswith("refs/") and check_ref_format(Ref(raw))


def advertise_receive_refs(refs: Sequence[tuple[str, str]], head_target: str | None) -> bytes:
    """The receive-pack ref advertisement body (without the `# service=` preamble)."""
    caps = list(RECEIVE_CAPABILITIES)
    if head_target is not None:
        caps += symref_capabilities([(b"HEAD", head_target.encode())])
    lines: list[tuple[bytes, bytes]] = [(name.encode(), sha.encode()) for name, sha in refs]
    if not lines:
        lines = [(CAPABILITIES_REF, ZERO_SHA.encode())]
    out = [pkt_line(format_ref_line(lines[0][0], lines[0][1], caps))]
    out += [pkt_line(format_ref_line(name, sha)) for name, sha in lines[1:]]
    out.append(pkt_line(None))
    return b"".join(out)


def service_preamble(service: str) -> bytes:
    return pkt_line(f"# service={service}\n".encode()) + pkt_line(None)


def read_commands(stream: BinaryIO) -> PushCommands:
    """Read the ref update commands up to the flush-pkt; `stream` is left at the pack's start.

    An empty request (git's auth probe sends a lone flush-pkt) gives no updates.
    """
    consumed = 0

    def read(n: int) -> bytes:
        nonlocal consumed
        consumed += n
        if consumed > MAX_COMMANDS_BYTES:
            raise ProtocolViolation(f"the ref update commands exceed {MAX_COMMANDS_BYTES} bytes")
        return stream.read(n)

    proto = Protocol(read, _no_write)
    updates: list[RefUpdate] = []
    capabilities: frozenset[bytes] = frozenset()
    seen: set[str] = set()
    try:
        while True:
            line = proto.read_pkt_line()
            if line is None:
                break
            if not updates and not seen:
                line, caps = extract_capabilities(line)
                capabilities = frozenset(c.split(b"=", 1)[0] for c in caps)
            update = _parse_command(line.rstrip(b"\n"))
            if update.ref in seen:
                raise ProtocolViolation(f"ref {update.ref} is updated twice in one push")
            seen.add(update.ref)
            updates.append(update)
    except HangupException:
        if updates:
            raise ProtocolViolation("the request ended before the flush-pkt after the commands") from None
    except (GitProtocolError, ValueError) as exc:
        raise ProtocolViolation(f"malformed pkt-line: {exc}") from None
    return PushCommands(tuple(updates), capabilities)


def _no_write(_data: bytes) -> None:
    raise AssertionError("read_commands never writes")


def _parse_command(line: bytes) -> RefUpdate:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("a ref update command is not UTF-8") from None
    parts = text.split(" ")
    if len(parts) != 3 or not valid_sha(parts[0]) or not valid_sha(parts[1]):
        if text.startswith(("shallow ", "push-cert")):
            raise ProtocolViolation("shallow pushes and signed pushes are not supported")
        raise ProtocolViolation(f"malformed ref update command {text[:120]!r}")
    old, new, ref = parts
    return RefUpdate(ref=ref, old=None if old == ZERO_SHA else old, new=None if new == ZERO_SHA else new)


def report_status(
    unpack_error: str | None,
    results: Iterable[tuple[str, str | None]],
    *,
    side_band: bool,
) -> bytes:
    """The report-status response: `unpack ok|<error>`, then `ok <ref>` / `ng <ref> <reason>`."""
    inner = BytesIO()
    writer = Protocol(_no_read, inner.write)
    unpack = "ok" if unpack_error is None else _one_line(unpack_error)
    writer.write_pkt_line(f"unpack {unpack}\n".encode())
    for ref, reason in results:
        if reason is None:
            writer.write_pkt_line(f"ok {ref}\n".encode())
        else:
            writer.write_pkt_line(f"ng {ref} {_one_line(reason)}\n".encode())
    writer.write_pkt_line(None)
    if not side_band:
        return inner.getvalue()
    return side_band_frames(SIDE_BAND_CHANNEL_DATA, inner.getvalue()) + pkt_line(None)


def progress_message(text: str) -> bytes:
    """A side-band progress frame the git client prints as `remote: <text>`."""
    return side_band_frames(SIDE_BAND_CHANNEL_PROGRESS, text.encode())


def side_band_frames(channel: int, data: bytes) -> bytes:
    out = BytesIO()
    Protocol(_no_read, out.write).write_sideband(channel, data)  # splits at 65515 bytes
    return out.getvalue()


def _no_read(_n: int) -> bytes:
    raise AssertionError("never reads")


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "error"
