"""Receiving packs: validate with dulwich, complete thin packs, quarantine by SHA-256.

`receive_pack` streams a client's pack through dulwich's `PackStreamCopier` (which checks
the pack's SHA-1 trailer) into a work file, indexes it with a `PackIndexer` that resolves
external delta bases against the repository's objects (a thin pack), parses and checks
every commit, tree and tag (git's fsck rules as dulwich implements them: no `.git`
entries, sorted trees, well-formed headers), appends the external bases so the pack is
self-contained (dulwich's `extend_pack`), writes a v2 index and publishes both under
`packs/sha256/<sha256 of the final pack>`. Anything wrong raises `PackRejected` with a
message a git user can read, and the work files are removed: nothing becomes visible.

Memory stays bounded whatever the pack claims (a 1 MB pack can inflate to 1 GiB):

- While copying, each object's size is read from its header (for a delta, the size of
  its result, from the first bytes of its data) and checked against the maximum object
  size before anything is inflated; the object is then inflated in 64 KiB pieces, only
  to find where its compressed data ends, and the output is dropped.
- While indexing, a blob stored whole is hashed as it is inflated, piece by piece;
  other objects and deltas are inflated whole (at most the limit), and a delta base
  waiting for its other children is kept only in a cache of one object's worth of
  bytes and read again from the pack when it was evicted (dulwich would keep every
  such base of a branching delta tree at once). The work file is read, not mapped.
- The final checks stream the file.

A self-contained pack goes through unchanged (byte for byte), so `accept_peer_pack`
(a validator that fetched a pack by digest) gets the same digest the receiving node did.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

from dulwich.errors import ApplyDeltaError, ChecksumMismatch, ObjectFormatException
from dulwich.object_format import SHA1
from dulwich.objects import Blob, ObjectID, RawObjectID, ShaFile, object_header, sha_to_hex
from dulwich.pack import (
    DELTA_TYPES,
    OFS_DELTA,
    REF_DELTA,
    PackIndexEntry,
    PackIndexer,
    PackStreamCopier,
    UnpackedObject,
    UnresolvedDeltas,
    _decode_delta_base_offset,
    _decode_object_header,
    extend_pack,
    read_pack_header,
    read_pack_header_at,
    take_msb_bytes,
    write_pack_index,
)

from adapters.git.sizes import DELTA_SIZES_BYTES, delta_sizes, entry_header_at, type_name
from adapters.git.store import GitStore
from consensus.files import fsync_dir

__all__ = [
    "ObjectTooLarge",
    "PackRejected",
    "PackTooLarge",
    "ReceivedPack",
    "accept_peer_pack",
    "accept_peer_pack_file",
    "receive_pack",
]

_COPY_CHUNK = 1024 * 1024
#: Compressed bytes read, and inflated bytes produced, at a time while skimming an object.
_SKIM_PIECE = 64 * 1024
#: An object header longer than this (type and size varint, or a delta's base distance) is malformed.
_MAX_VARINT_BYTES = 12
#: Delta bases re-read from the pack in a row to rebuild an evicted base (git caps depth at 4095).
_MAX_REBUILD_CHAIN = 10_000
_HASH_SIZE = 20


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


class ObjectTooLarge(PackRejected):
    """An object (or the result of a delta) is larger than the maximum object size.

    Told from the headers alone, so the object has no id yet: it is named by its kind,
    its place in the pack and its size, which is what a user looks for (`find -size`).
    """

    def __init__(self, kind: str, number: int, count: int, size: int, max_bytes: int) -> None:
        makes = "makes an object of" if kind == "delta" else "is"
        super().__init__(
            f"a {kind} (object {number} of {count} in the pack) {makes} {_approx(size)}; "
            f"this exceeds the maximum object size of {_human(max_bytes)}"
        )
        self.size = size
        self.max_bytes = max_bytes


def receive_pack(
    store: GitStore,
    repo_id: str,
    pack: bytes | BinaryIO,
    *,
    max_bytes: int | None = None,
    max_object_bytes: int | None = None,
    fsck: bool = True,
) -> ReceivedPack:
    """Validate a pack pushed to `repo_id` (thin allowed) and quarantine it, complete.

    `pack` is the pack's bytes or a binary stream positioned at its first byte (read to
    its end). Over `max_bytes` (default: the store's limit) it is refused before or while
    reading; an object over `max_object_bytes` (default: the store's) is refused before
    it is inflated. External delta bases are looked up in the repository's objects only.
    """
    limits = _limits(store, max_bytes, max_object_bytes)
    with store.open(repo_id) as repo:
        return _ingest(store, pack, limits, repo.object_store.get_raw, fsck)


def accept_peer_pack(
    store: GitStore,
    digest: str,
    pack: bytes,
    *,
    max_bytes: int | None = None,
    max_object_bytes: int | None = None,
    fsck: bool = True,
) -> ReceivedPack:
    """Quarantine a pack fetched from a peer by its digest, after checking it is that pack.

    The bytes must hash to `digest` and be a valid pack that needs no other objects, with
    every object within the maximum object size (a Byzantine peer may offer a bomb).
    """
    limits = _limits(store, max_bytes, max_object_bytes)
    store.pack_base(digest)  # validates the digest's form
    if len(pack) > limits.pack:
        raise PackTooLarge(limits.pack)
    if hashlib.sha256(pack).hexdigest() != digest:
        raise PackRejected(f"the pack's SHA-256 is not {digest}")
    received = _ingest(store, pack, limits, None, fsck)
    if received.digest != digest:  # cannot happen: a self-contained pack is kept byte for byte
        raise PackRejected(f"the stored pack's SHA-256 is {received.digest}, not {digest}")
    return received


def accept_peer_pack_file(
    store: GitStore,
    digest: str,
    path: Path,
    *,
    max_bytes: int | None = None,
    max_object_bytes: int | None = None,
    fsck: bool = True,
) -> ReceivedPack:
    """`accept_peer_pack` for a pack downloaded to a file (streamed, never all in memory)."""
    limits = _limits(store, max_bytes, max_object_bytes)
    store.pack_base(digest)  # validates the digest's form
    if path.stat().st_size > limits.pack:
        raise PackTooLarge(limits.pack)
    if store.has_pack(digest):
        return ReceivedPack(digest=digest, object_count=0, size=path.stat().st_size, created=False)
    before = set(store.quarantined())
    with open(path, "rb") as f:
        received = _ingest(store, f, limits, None, fsck)
    if received.digest != digest:
        if received.digest not in before:
            store.discard_pack(received.digest)
        raise PackRejected(f"the pack's SHA-256 is {received.digest}, not {digest}")
    return received


# ---------------------------------------------------------------------------- internals

GetRaw = Callable[[RawObjectID | ObjectID], tuple[int, bytes]]


@dataclass(frozen=True, slots=True)
class _Limits:
    pack: int  # bytes of the pack as received
    object: int  # inflated bytes of any one object (a delta's result included)


def _limits(store: GitStore, max_bytes: int | None, max_object_bytes: int | None) -> _Limits:
    return _Limits(
        pack=store.max_pack_bytes if max_bytes is None else max_bytes,
        object=store.max_object_bytes if max_object_bytes is None else max_object_bytes,
    )


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


class _SkimmingCopier(PackStreamCopier):
    """dulwich's `PackStreamCopier`, except that no object is inflated whole.

    Each object's header is read first and its size checked against the limit (for a
    delta, the size of its result too, from the first bytes of its data); then its
    zlib stream is inflated in bounded pieces, only to find where it ends, and the
    output is dropped. The indexer inflates the objects later, once all are known to
    be within the limit. The trailer is checked as dulwich does.
    """

    def __init__(
        self,
        read_all: Callable[[int], bytes],
        read_some: Callable[[int], bytes],
        outfile: BinaryIO,
        delta_iter: PackIndexer,
        max_object_bytes: int,
    ) -> None:
        super().__init__(SHA1.hash_func, read_all, read_some, outfile, delta_iter=delta_iter)  # type: ignore[arg-type]
        self.max_object_bytes = max_object_bytes
        #: The offset just past the last object (where the trailer must start).
        self.objects_end = 0

    def read_objects(self, compute_crc32: bool = False) -> Iterator[UnpackedObject]:
        # As `PackStreamReader.read_objects` (dulwich 1.2.21), with `_skim_object` in place
        # of `unpack_object`.
        _, self._num_objects = read_pack_header(self.read)
        for number in range(1, self._num_objects + 1):
            offset = self.offset
            unpacked, unused = self._skim_object(number)
            unpacked.offset = offset
            buf = BytesIO()
            buf.write(unused)
            buf.write(self._rbuf.read())
            buf.seek(0)
            self._rbuf = buf
            yield unpacked
        self.objects_end = self.offset
        if self._buf_len() < _HASH_SIZE:
            self.read(_HASH_SIZE)
        pack_sha = bytearray(self._trailer)
        if pack_sha != self.sha.digest():
            raise ChecksumMismatch(sha_to_hex(RawObjectID(bytes(pack_sha))), self.sha.hexdigest())

    def _header_varint(self) -> list[int]:
        taken = 0

        def read(n: int) -> bytes:
            nonlocal taken
            taken += n
            if taken > _MAX_VARINT_BYTES:
                raise PackRejected("malformed pack: an object header is too long")
            return self.read(n)

        raw, _ = take_msb_bytes(read)
        return raw

    def _skim_object(self, number: int) -> tuple[UnpackedObject, bytes]:
        type_num, size = _decode_object_header(self._header_varint())
        base: int | bytes | None = None
        if type_num == OFS_DELTA:
            base = _decode_delta_base_offset(self._header_varint())
        elif type_num == REF_DELTA:
            base = self.read(_HASH_SIZE)
            if len(base) != _HASH_SIZE:
                raise zlib.error("EOF before the delta's base id")
        limit = self.max_object_bytes
        if size > limit:
            raise ObjectTooLarge(type_name(type_num), number, self._num_objects, size, limit)
        unpacked = UnpackedObject(type_num, delta_base=base, decomp_len=size, hash_func=SHA1.hash_func)
        head = b"" if type_num in DELTA_TYPES else None
        inflater = zlib.decompressobj()
        produced = 0
        while not inflater.eof:
            data = self.recv(_SKIM_PIECE)
            if not data:
                raise zlib.error("EOF before end of zlib stream")
            while data and not inflater.eof:  # (after the end, the rest is in unused_data)
                out = inflater.decompress(data, _SKIM_PIECE)
                produced += len(out)
                if produced > size:
                    raise zlib.error("decompressed data exceeds expected size")
                if head is not None and len(head) < DELTA_SIZES_BYTES:
                    head += out[: DELTA_SIZES_BYTES - len(head)]
                    sizes = delta_sizes(head)
                    if sizes is not None:
                        if sizes[1] > limit:
                            raise ObjectTooLarge("delta", number, self._num_objects, sizes[1], limit)
                        head = None  # checked
                data = inflater.unconsumed_tail
        if produced != size:
            raise zlib.error("decompressed data does not match expected size")
        if head is not None:
            raise ApplyDeltaError("delta truncated in size header")
        return unpacked, inflater.unused_data


class _BaseCache:
    """Resolved delta bases by offset, least recently used first out, within a byte budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.held = 0
        self._items: OrderedDict[int, tuple[int, list[bytes]]] = OrderedDict()

    def get(self, offset: int) -> list[bytes] | None:
        item = self._items.get(offset)
        if item is None:
            return None
        self._items.move_to_end(offset)
        return item[1]

    def put(self, offset: int, chunks: list[bytes]) -> None:
        size = sum(len(c) for c in chunks)
        self.discard(offset)
        if size > self.budget:
            return
        while self._items and self.held + size > self.budget:
            _, (old, _) = self._items.popitem(last=False)
            self.held -= old
        self._items[offset] = (size, chunks)
        self.held += size

    def discard(self, offset: int) -> None:
        item = self._items.pop(offset, None)
        if item is not None:
            self.held -= item[0]


class _CheckingIndexer(PackIndexer):
    """A `PackIndexer` that parses (and, with fsck, checks) every non-blob object, in bounded memory.

    - It reads the work file with plain reads, not through a memory map: pages of a
      mapped pack count in the node's resident memory for as long as it is mapped.
    - A blob that is not a delta is hashed as it is inflated, piece by piece (a blob
      needs no parsing); it is inflated whole only if deltas in the pack build on it.
    - dulwich walks each delta tree depth first and keeps a base with its pending
      children on the walk's stack, so a branching tree of deltas over one large
      object (a few bytes each) holds a copy of that object per level. Here pending
      bases live in a `_BaseCache` of `base_budget` bytes (one object's worth); one
      evicted before its children are resolved is rebuilt along its delta chain.
    """

    fsck = True

    def __init__(
        self,
        f: BinaryIO,
        get_raw: GetRaw | None,
        *,
        fsck: bool,
        base_budget: int,
    ) -> None:
        super().__init__(f, SHA1.hash_func, resolve_ext_ref=get_raw, object_format=SHA1)
        self._fd = f.fileno()
        self.fsck = fsck
        self._bases = _BaseCache(base_budget)
        self._waiting: dict[int, int] = {}  # base offset -> children not yet resolved
        self._ref_base: dict[int, int] = {}  # REF_DELTA offset -> its base's offset in this pack

    def _result(self, unpacked: UnpackedObject) -> PackIndexEntry:
        entry = super()._result(unpacked)
        type_num = unpacked.obj_type_num
        if type_num != Blob.type_num:
            assert type_num is not None and unpacked.obj_chunks is not None
            obj = ShaFile.from_raw_chunks(type_num, unpacked.obj_chunks, object_format=SHA1)
            if self.fsck:
                obj.check()
        return entry

    def _read_at(self, offset: int, n: int) -> bytes:
        return os.pread(self._fd, n, offset)

    def _hash_blob(self, offset: int) -> PackIndexEntry:
        """The index entry of the whole blob at `offset`, inflating it piece by piece."""
        header = entry_header_at(self._read_at, offset)
        sha = SHA1.hash_func()
        sha.update(object_header(Blob.type_num, header.size))
        crc = zlib.crc32(self._read_at(offset, header.data_offset - offset))
        inflater = zlib.decompressobj()
        pos = header.data_offset
        produced = 0
        while not inflater.eof:
            data = self._read_at(pos, _SKIM_PIECE)
            if not data:
                raise zlib.error("EOF before end of zlib stream")
            rest = data
            while rest and not inflater.eof:
                out = inflater.decompress(rest, _SKIM_PIECE)
                produced += len(out)
                if produced > header.size:
                    raise zlib.error("decompressed data exceeds expected size")
                sha.update(out)
                rest = inflater.unconsumed_tail
            used = len(data) - len(inflater.unused_data) if inflater.eof else len(data)
            crc = zlib.crc32(data[:used], crc)
            pos += used
        if produced != header.size:
            raise zlib.error("decompressed data does not match expected size")
        return RawObjectID(sha.digest()), offset, crc & 0xFFFFFFFF

    def _follow_chain(
        self, offset: int, obj_type_num: int, base_chunks: bytes | list[bytes] | None
    ) -> Iterator[PackIndexEntry]:
        todo: list[tuple[int, int, int | None]] = [(offset, obj_type_num, None)]
        while todo:
            offset, type_num, base_at = todo.pop()
            chunks: list[bytes] | None = None
            if base_at is None and base_chunks is None and type_num == Blob.type_num:
                entry = self._hash_blob(offset)
                yield entry
                sha = entry[0]
            else:
                base = base_chunks if base_at is None else self._base(base_at, type_num)
                unpacked = self._resolve_object(offset, type_num, base)
                del base
                if base_at is not None:
                    self._child_done(base_at)
                yield self._result(unpacked)
                sha, chunks = unpacked.sha(), unpacked.obj_chunks
                del unpacked
            children = self._pending_ofs.pop(offset, [])
            ref_children = self._pending_ref.pop(sha, [])
            for child in ref_children:
                self._ref_base[child] = offset
            if children or ref_children:
                if chunks is None:
                    chunks = self._resolve_object(offset, type_num, None).obj_chunks
                assert chunks is not None
                self._bases.put(offset, chunks)
                self._waiting[offset] = len(children) + len(ref_children)
                todo.extend((child, type_num, offset) for child in (*children, *ref_children))
            del chunks

    def _child_done(self, base_at: int) -> None:
        left = self._waiting[base_at] - 1
        if left:
            self._waiting[base_at] = left
        else:
            del self._waiting[base_at]
            self._bases.discard(base_at)

    def _base(self, at: int, type_num: int) -> bytes | list[bytes]:
        """The resolved object at `at`: from the cache, else rebuilt along its delta chain."""
        cached = self._bases.get(at)
        if cached is not None:
            return cached
        chain = [at]
        chunks: bytes | list[bytes] | None = None
        while chunks is None:
            header = entry_header_at(self._read_at, chain[-1])
            if header.pack_type == OFS_DELTA:
                assert isinstance(header.base, int)
                parent: int | None = header.base
            elif header.pack_type == REF_DELTA:
                parent = self._ref_base.get(chain[-1])
                if parent is None:  # a thin pack's external base
                    assert isinstance(header.base, bytes) and self._resolve_ext_ref is not None
                    _, raw = self._resolve_ext_ref(RawObjectID(header.base))
                    chunks = self._resolve_object(chain.pop(), type_num, raw).obj_chunks
                    break
            else:
                chunks = self._resolve_object(chain.pop(), type_num, None).obj_chunks
                break
            assert parent is not None
            chunks = self._bases.get(parent)
            if chunks is None:
                chain.append(parent)
                if len(chain) > _MAX_REBUILD_CHAIN:
                    raise ApplyDeltaError(f"a delta chain is longer than {_MAX_REBUILD_CHAIN}")
        for offset in reversed(chain):
            chunks = self._resolve_object(offset, type_num, chunks).obj_chunks
        assert chunks is not None
        return chunks


def _ingest(
    store: GitStore, pack: bytes | BinaryIO, limits: _Limits, get_raw: GetRaw | None, fsck: bool
) -> ReceivedPack:
    if isinstance(pack, bytes | bytearray) and len(pack) > limits.pack:
        raise PackTooLarge(limits.pack)
    source = _Source(pack, limits.pack)
    fd, tmp_name = tempfile.mkstemp(prefix="recv-", suffix=".pack", dir=store.tmp_dir)
    tmp_pack = Path(tmp_name)
    tmp_idx = tmp_pack.with_suffix(".idx")
    try:
        with os.fdopen(fd, "w+b") as f:
            entries, ext_refs = _copy_and_index(f, source, get_raw, fsck, limits.object)
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
    f: BinaryIO, source: _Source, get_raw: GetRaw | None, fsck: bool, max_object_bytes: int
) -> tuple[list[PackIndexEntry], set[RawObjectID]]:
    """Copy the pack into `f`, checking sizes and trailer, then index it: (entries, external bases)."""
    indexer = _CheckingIndexer(f, get_raw, fsck=fsck, base_budget=max_object_bytes)
    with _rejecting(source, "reading the pack"):
        copier = _SkimmingCopier(source.read_all, source.read_some, f, indexer, max_object_bytes)
        copier.verify()
        object_count = len(copier)
    if not source.at_end():
        raise PackRejected("unexpected data after the pack's checksum")
    f.flush()
    # The last object must end right where the 20-byte trailer starts (git's "junk" check).
    if copier.objects_end + _HASH_SIZE != f.seek(0, os.SEEK_END):
        raise PackRejected("unexpected data between the pack's last object and its checksum")
    f.seek(0)
    with _rejecting(source, "resolving the pack's objects"):
        entries = list(indexer)
        ext_refs = set(indexer.ext_refs())
    if len(entries) != object_count:
        raise PackRejected(f"the pack declares {object_count} objects but {len(entries)} could be read")
    if len({sha for sha, _, _ in entries}) != len(entries):
        raise PackRejected("the pack holds the same object twice")
    return entries, ext_refs


def _resolver(get_raw: GetRaw | None) -> GetRaw:
    if get_raw is not None:
        return get_raw

    def missing(sha: RawObjectID | ObjectID) -> tuple[int, bytes]:
        raise KeyError(sha)

    return missing


def _check_final(path: Path, count: int) -> tuple[str, int]:
    """Re-read the completed pack, streaming: its trailer, its object count; (sha256, size)."""
    digest = hashlib.sha256()
    trailer_sha = SHA1.hash_func()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = f.read(12)
        try:
            _, declared = read_pack_header_at(header)
        except AssertionError as exc:  # our own output: anything wrong here is a bug, reported as such
            raise PackRejected(f"the completed pack does not verify: {exc}") from exc
        for hasher in (digest, trailer_sha):
            hasher.update(header)
        left = size - 12 - _HASH_SIZE
        while left > 0:
            chunk = f.read(min(left, _COPY_CHUNK))
            if not chunk:
                break
            left -= len(chunk)
            digest.update(chunk)
            trailer_sha.update(chunk)
        trailer = f.read(_HASH_SIZE)
        digest.update(trailer)
    if left or trailer != trailer_sha.digest():
        raise PackRejected("the completed pack does not verify: its checksum does not match")
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


def _approx(n: int) -> str:
    """A size for people, to two decimals: `1.00 GiB`."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} bytes"


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
