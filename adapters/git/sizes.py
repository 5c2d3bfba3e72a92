"""Object sizes from pack entry headers, without inflating the objects.

A pack entry starts with its type and inflated size (git's varint), then, for a delta,
its base (a distance back in the pack, or an object id); a delta's data starts with
the sizes of its base and of its result. Those few bytes tell how large an object is,
and that has to be known before inflating it: a 1 MB pack can hold a 1 GiB blob of
zeros, and a few bytes of delta can make a 1 GiB object out of a 64 KiB one.

Used by ingestion (`packs`), the ledger's size query (`pack_view`) and the REST reads
(`browse`). The varints are read with dulwich's helpers; the one layout dulwich does
not expose on its own (a delta's two sizes) is decoded here.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from dulwich.errors import ApplyDeltaError
from dulwich.objects import ObjectID, RawObjectID, hex_to_sha
from dulwich.pack import (
    DELTA_TYPES,
    OFS_DELTA,
    REF_DELTA,
    Pack,
    _decode_delta_base_offset,
    _decode_object_header,
    take_msb_bytes_at,
)
from dulwich.repo import Repo

__all__ = [
    "DELTA_SIZES_BYTES",
    "EntryHeader",
    "ReadAt",
    "delta_sizes",
    "entry_header_at",
    "inflate_head",
    "object_size_at",
    "stored_object_info",
    "type_name",
]

#: Bytes at the start of a delta's data that hold its two sizes (two varints of up to 10 bytes).
DELTA_SIZES_BYTES = 20
#: Longer than any entry header: type and size (up to 10 bytes) and a base (up to 20).
_HEADER_BYTES = 64
#: Delta chains followed to find an object's type (git caps `pack.depth` at 4095).
_MAX_CHAIN = 10_000
_HASH_SIZE = 20
_TYPE_NAMES = {1: "commit", 2: "tree", 3: "blob", 4: "tag", OFS_DELTA: "delta", REF_DELTA: "delta"}

#: `read_at(offset, n)`: up to `n` bytes of a pack from `offset` (fewer only at its end).
ReadAt = Callable[[int, int], bytes]


@dataclass(frozen=True, slots=True)
class EntryHeader:
    pack_type: int
    #: The inflated size of the entry's data: the object's, or for a delta the delta's own.
    size: int
    #: OFS_DELTA: the base's offset in the pack; REF_DELTA: its binary id; else None.
    base: int | bytes | None
    #: Where the entry's zlib stream starts.
    data_offset: int


def type_name(pack_type: int) -> str:
    return _TYPE_NAMES.get(pack_type, f"type {pack_type}")


def _varint(raw: list[int]) -> int:
    return sum((byte & 0x7F) << (7 * i) for i, byte in enumerate(raw))


def delta_sizes(head: bytes) -> tuple[int, int] | None:
    """(base size, result size) from the first bytes of a delta's data; None if `head` is too short."""
    sizes: list[int] = []
    pos = 0
    for _ in range(2):
        try:
            raw, pos, _ = take_msb_bytes_at(head, pos)
        except AssertionError:  # ran off the end of `head`
            return None
        sizes.append(_varint(raw))
    return sizes[0], sizes[1]


def entry_header_at(read_at: ReadAt, offset: int) -> EntryHeader:
    """The header of the pack entry at `offset`. Raises ValueError when it is malformed."""
    block = read_at(offset, _HEADER_BYTES)
    try:
        raw, pos, _ = take_msb_bytes_at(block, 0)
        pack_type, size = _decode_object_header(raw)
        base: int | bytes | None = None
        if pack_type == OFS_DELTA:
            raw, pos, _ = take_msb_bytes_at(block, pos)
            base = offset - _decode_delta_base_offset(raw)
        elif pack_type == REF_DELTA:
            base = bytes(block[pos : pos + _HASH_SIZE])
            if len(base) != _HASH_SIZE:
                raise AssertionError("the pack ends inside a delta's base id")
            pos += _HASH_SIZE
    except (AssertionError, ApplyDeltaError) as exc:  # a header running off the end; a zero distance
        raise ValueError(f"malformed pack entry header at offset {offset}: {exc}") from None
    if isinstance(base, int) and base < 12:
        raise ValueError(f"the delta at offset {offset} names a base before the pack's first object")
    return EntryHeader(pack_type, size, base, offset + pos)


def inflate_head(read_at: ReadAt, offset: int, want: int, piece: int = 4096) -> bytes:
    """The first `want` inflated bytes of the zlib stream at `offset` (fewer if it is shorter).

    Reads the compressed data `piece` bytes at a time and never produces more than
    `want` bytes, however much the stream would inflate to.
    """
    inflater = zlib.decompressobj()
    out = b""
    pos = offset
    while len(out) < want and not inflater.eof:
        data = read_at(pos, piece)
        if not data:
            raise ValueError(f"the pack ends inside the compressed data at offset {offset}")
        pos += len(data)
        try:
            out += inflater.decompress(data, want - len(out))
        except zlib.error as exc:
            raise ValueError(f"corrupt compressed data at offset {offset}: {exc}") from None
    return out


def object_size_at(read_at: ReadAt, offset: int) -> tuple[EntryHeader, int]:
    """The entry at `offset` and the size of the object it stands for (a delta: its result's)."""
    header = entry_header_at(read_at, offset)
    if header.pack_type not in DELTA_TYPES:
        return header, header.size
    sizes = delta_sizes(inflate_head(read_at, header.data_offset, min(DELTA_SIZES_BYTES, header.size)))
    if sizes is None:
        raise ValueError(f"the delta at offset {offset} has no valid size header")
    return header, sizes[1]


def stored_object_info(repo: Repo, sha: str) -> tuple[int, int] | None:
    """(type number, size) of an object of the repository, from its headers; None if missing.

    Looks in the repository's packs first (where every pushed object is), then for a
    loose object; only headers and the first bytes of zlib streams are read.
    """
    raw = hex_to_sha(ObjectID(sha.encode("ascii")))
    for pack in repo.object_store.packs:
        try:
            offset = pack.index.object_offset(raw)
        except KeyError:
            continue
        with open(pack.data.path, "rb") as f:
            return _packed_info(repo, pack, _file_reader(f.fileno()), offset, sha)
    return _loose_info(repo, sha)


def _file_reader(fd: int) -> ReadAt:
    def read_at(pos: int, n: int) -> bytes:
        return os.pread(fd, n, pos)

    return read_at


def _packed_info(repo: Repo, pack: Pack, read_at: ReadAt, offset: int, sha: str) -> tuple[int, int] | None:
    header, size = object_size_at(read_at, offset)
    for _ in range(_MAX_CHAIN):  # the type is the chain's base object's
        if header.pack_type not in DELTA_TYPES:
            return header.pack_type, size
        if isinstance(header.base, int):
            header = entry_header_at(read_at, header.base)
            continue
        base = header.base
        assert isinstance(base, bytes)
        try:
            header = entry_header_at(read_at, pack.index.object_offset(RawObjectID(base)))
        except KeyError:  # a base in another pack (Stele's packs are self-contained)
            found = stored_object_info(repo, base.hex())
            return (found[0], size) if found is not None else None
    raise ValueError(f"the delta chain of {sha} is longer than {_MAX_CHAIN}")


def _loose_info(repo: Repo, sha: str) -> tuple[int, int] | None:
    path = os.path.join(repo.object_store.path, sha[:2], sha[2:])
    try:
        with open(path, "rb") as f:
            head = inflate_head(_file_reader(f.fileno()), 0, 64)
    except FileNotFoundError:
        return None
    kind, _, rest = head.partition(b" ")
    size, nul, _ = rest.partition(b"\0")
    numbers = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
    if kind not in numbers or not nul or not size.isdigit():
        raise ValueError(f"malformed loose object {sha}")
    return numbers[kind], int(size)
