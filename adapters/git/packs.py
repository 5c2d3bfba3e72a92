"""Receiving packs: validate with dulwich, complete thin packs, quarantine by SHA-256.

`receive_pack` streams a client's pack through dulwich's `PackStreamCopier` (which checks
the pack's SHA-1 trailer) into a work file, indexes it with a `PackIndexer` that resolves
external delta bases against the repository's objects (a thin pack), parses and checks
every commit, tree and tag (git's fsck rules as dulwich implements them: no `.git`
entries, sorted trees, well-formed headers), appends the external bases so the pack is
self-contained (dulwich's `extend_pack`), writes a v2 index and publishes both under
`packs/sha256/<sha256 of the final pack>`. Anything wrong raises `PackRejected` with a
message a git user can read, and the work files are removed: nothing becomes visible.

A self-contained pack goes through unchanged (byte for byte), so `accept_peer_pack`
(a validator that fetched a pack by digest) gets the same digest the receiving node did.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from dulwich.errors import ApplyDeltaError, ChecksumMismatch, ObjectFormatException
from dulwich.object_format import SHA1
from dulwich.objects import Blob, ObjectID, RawObjectID, ShaFile
from dulwich.pack import (
    PackData,
    PackIndexEntry,
    PackIndexer,
    PackStreamCopier,
    UnpackedObject,
    UnresolvedDeltas,
    extend_pack,
    unpack_object_at,
    write_pack_index,
)

from adapters.git.store import GitStore
from consensus.files import fsync_dir

__all__ = [
    "PackRejected",
    "PackTooLarge",
    "ReceivedPack",
    "accept_peer_pack",
    "accept_peer_pack_file",
    "receive_pack",
]

_COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedPack:
    """A quarantined, self-contained pack: `packs/sha256/<digest>.pack` of `size` bytes."""

    digest: str
    object_count: int
    size: int
    #: This call put the pack in quarantine (False: it was already there, maybe named by the
    #: ledger). Only a creator may discard it, and only if no transaction names it.
    created: bool = True


class PackRejected(Exception):
    """The pack is malformed, truncated, corrupt, incomplete or too large; nothing was kept."""


class PackTooLarge(PackRejected):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"pack exceeds the maximum size of {_human(max_bytes)}")
        self.max_bytes = max_bytes


def receive_pack(
    store: GitStore,
    repo_id: str,
    pack: bytes | BinaryIO,
    *,
    max_bytes: int | None = None,
    fsck: bool = True,
) -> ReceivedPack:
    """Validate a pack pushed to `repo_id` (thin allowed) and quarantine it, complete.

    `pack` is the pack's bytes or a binary stream positioned at its first byte (read to
    its end). Over `max_bytes` (default: the store's limit) it is refused before or while
    reading. External delta bases are looked up in the repository's objects only.
    """
    limit = store.max_pack_bytes if max_bytes is None else max_bytes
    with store.open(repo_id) as repo:
        return _ingest(store, pack, limit, repo.object_store.get_raw, fsck)


def accept_peer_pack(
    store: GitStore, digest: str, pack: bytes, *, max_bytes: int | None = None, fsck: bool = True
) -> ReceivedPack:
    """Quarantine a pack fetched from a peer by its digest, after checking it is that pack.

    The bytes must hash to `digest` and be a valid pack that needs no other objects.
    """
    limit = store.max_pack_bytes if max_bytes is None else max_bytes
    store.pack_base(digest)  # validates the digest's form
    if len(pack) > limit:
        raise PackTooLarge(limit)
    if hashlib.sha256(pack).hexdigest() != digest:
        raise PackRejected(f"the pack's SHA-256 is not {digest}")
    received = _ingest(store, pack, limit, None, fsck)
    if received.digest != digest:  # cannot happen: a self-contained pack is kept byte for byte
        raise PackRejected(f"the stored pack's SHA-256 is {received.digest}, not {digest}")
    return received


def accept_peer_pack_file(
    store: GitStore, digest: str, path: Path, *, max_bytes: int | None = None, fsck: bool = True
) -> ReceivedPack:
    """`accept_peer_pack` for a pack downloaded to a file (streamed, never all in memory)."""
    limit = store.max_pack_bytes if max_bytes is None else max_bytes
    store.pack_base(digest)  # validates the digest's form
    if path.stat().st_size > limit:
        raise PackTooLarge(limit)
    if store.has_pack(digest):
        return ReceivedPack(digest=digest, object_count=0, size=path.stat().st_size, created=False)
    before = set(store.quarantined())
    with open(path, "rb") as f:
        received = _ingest(store, f, limit, None, fsck)
    if received.digest != digest:
        if received.digest not in before:
            store.discard_pack(received.digest)
        raise PackRejected(f"the pack's SHA-256 is {received.digest}, not {digest}")
    return received


# ---------------------------------------------------------------------------- internals

GetRaw = Callable[[RawObjectID | ObjectID], tuple[int, bytes]]


class _Source:
    """Reads the incoming pack, counting bytes against the limit and noticing a truncation."""

    def __init__(self, pack: bytes | BinaryIO, limit: int) -> None:
        self._stream: BinaryIO = BytesIO(pack) if isinstance(pack, bytes | bytearray) else pack
        self.limit = limit
        self.consumed = 0
        self.short = False  # the data ended where the pack says more must follow

    def _take(self, n: int) -> bytes:
        data = self._stream.read(n) if n > 0 else b""
        self.consumed += len(data)
        if self.consumed > self.limit:
            raise PackTooLarge(self.limit)
        return data

    def read_all(self, n: int) -> bytes:
        data = self._take(n)
        if len(data) < n:
            self.short = True
        return data

    def read_some(self, n: int) -> bytes:
        data = self._take(n)
        if n > 0 and not data:
            self.short = True
        return data

    def at_end(self) -> bool:
        return not self._stream.read(1)


class _CheckingIndexer(PackIndexer):
    """A `PackIndexer` that also parses (and, with fsck, checks) every non-blob object."""

    fsck = True

    def _result(self, unpacked: UnpackedObject) -> PackIndexEntry:
        entry = super()._result(unpacked)
        type_num = unpacked.obj_type_num
        if type_num != Blob.type_num:
            assert type_num is not None and unpacked.obj_chunks is not None
            obj = ShaFile.from_raw_chunks(type_num, unpacked.obj_chunks, object_format=SHA1)
            if self.fsck:
                obj.check()
        return entry


def _ingest(
    store: GitStore, pack: bytes | BinaryIO, limit: int, get_raw: GetRaw | None, fsck: bool
) -> ReceivedPack:
    if isinstance(pack, bytes | bytearray) and len(pack) > limit:
        raise PackTooLarge(limit)
    source = _Source(pack, limit)
    fd, tmp_name = tempfile.mkstemp(prefix="recv-", suffix=".pack", dir=store.tmp_dir)
    tmp_pack = Path(tmp_name)
    tmp_idx = tmp_pack.with_suffix(".idx")
    try:
        with os.fdopen(fd, "w+b") as f:
            entries, ext_refs = _copy_and_index(f, tmp_pack, source, get_raw, fsck)
            with _rejecting(source, "completing the thin pack"):
                pack_sha, extra = extend_pack(f, ext_refs, get_raw=_resolver(get_raw), object_format=SHA1)
            f.flush()
            os.fsync(f.fileno())
        entries.extend(extra)
        entries.sort()
        with open(tmp_idx, "wb") as idx:
            write_pack_index(idx, entries, pack_sha, version=2)
            idx.flush()
            os.fsync(idx.fileno())
        digest, size = _check_final(tmp_pack, len(entries))
        created = not store.has_pack(digest)
        if created:
            base = store.pack_base(digest)
            os.replace(tmp_pack, base.with_suffix(".pack"))
            os.replace(tmp_idx, base.with_suffix(".idx"))  # the index last: now the pack exists
            fsync_dir(store.packs_dir)
        return ReceivedPack(digest=digest, object_count=len(entries), size=size, created=created)
    finally:
        for leftover in (tmp_pack, tmp_idx):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _copy_and_index(
    f: BinaryIO, path: Path, source: _Source, get_raw: GetRaw | None, fsck: bool
) -> tuple[list[PackIndexEntry], set[RawObjectID]]:
    """Copy the pack into `f` verifying its trailer, then index it: (entries, external bases)."""
    indexer = _CheckingIndexer(f, SHA1.hash_func, resolve_ext_ref=get_raw, object_format=SHA1)
    indexer.fsck = fsck
    with _rejecting(source, "reading the pack"):
        copier = PackStreamCopier(SHA1.hash_func, source.read_all, source.read_some, f, delta_iter=indexer)  # type: ignore[arg-type]
        copier.verify()
        object_count = len(copier)
    if not source.at_end():
        raise PackRejected("unexpected data after the pack's checksum")
    f.flush()
    f.seek(0)
    with _rejecting(source, "resolving the pack's objects"), PackData(str(path), SHA1, file=f) as data:
        indexer.set_pack_data(data)
        entries = list(indexer)
        ext_refs = set(indexer.ext_refs())
    if len(entries) != object_count:
        raise PackRejected(f"the pack declares {object_count} objects but {len(entries)} could be read")
    if len({sha for sha, _, _ in entries}) != len(entries):
        raise PackRejected("the pack holds the same object twice")
    _check_no_gap(f, max((offset for _, offset, _ in entries), default=None))
    return entries, ext_refs


def _check_no_gap(f: BinaryIO, last_offset: int | None) -> None:
    """The last object must end right where the 20-byte trailer starts (git's "junk" check)."""
    size = f.seek(0, os.SEEK_END)
    end = 12
    if last_offset is not None:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as contents:
            _, end = unpack_object_at(contents, last_offset, SHA1.hash_func)
    if end + 20 != size:
        raise PackRejected("unexpected data between the pack's last object and its checksum")


def _resolver(get_raw: GetRaw | None) -> GetRaw:
    if get_raw is not None:
        return get_raw

    def missing(sha: RawObjectID | ObjectID) -> tuple[int, bytes]:
        raise KeyError(sha)

    return missing


def _check_final(path: Path, count: int) -> tuple[str, int]:
    """Re-read the completed pack: its trailer, its length, its object count; (sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        header = f.read(12)
        digest.update(header)
        size += len(header)
        while chunk := f.read(_COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    try:
        with PackData(str(path), SHA1) as data:
            data.check()
            declared = len(data)
    except Exception as exc:  # our own output: anything wrong here is a bug, reported as such
        raise PackRejected(f"the completed pack does not verify: {exc}") from exc
    if declared != count:
        raise PackRejected(f"the completed pack declares {declared} objects, not {count}")
    return digest.hexdigest(), size


@contextlib.contextmanager
def _rejecting(source: _Source, doing: str) -> Iterator[None]:
    """Turn whatever dulwich raises about a bad pack into a `PackRejected` a git user can read."""
    try:
        yield
    except PackRejected:
        raise
    except UnresolvedDeltas as exc:
        missing = ", ".join(s.decode() for s in exc.shas[:3]) + (" ..." if len(exc.shas) > 3 else "")
        raise PackRejected(f"the pack deltas against objects this repository lacks: {missing}") from None
    except ChecksumMismatch:
        if source.short:
            raise PackRejected("the pack is truncated") from None
        raise PackRejected("the pack's checksum does not match its contents (corrupt pack)") from None
    except ObjectFormatException as exc:
        raise PackRejected(f"malformed object in the pack: {exc}") from None
    except ApplyDeltaError as exc:
        raise PackRejected(f"invalid delta in the pack: {exc}") from None
    except zlib.error as exc:
        if source.short:
            raise PackRejected("the pack is truncated") from None
        raise PackRejected(f"corrupt compressed data in the pack: {exc}") from None
    except Exception as exc:  # dulwich signals some malformations with asserts, ValueError, KeyError...
        if source.short:
            raise PackRejected("the pack is truncated") from None
        detail = str(exc) or type(exc).__name__
        raise PackRejected(f"malformed pack while {doing}: {detail}") from None


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
