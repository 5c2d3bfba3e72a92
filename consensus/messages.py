"""Consensus wire messages and their strict codec.

One tag byte followed by the message fields. `decode_message` raises DecodeError
for anything malformed; callers count and drop it.

The Blob* messages move content-addressed blobs (git packs) between validators; the
host routes them to `adapters.blob_sync.BlobSync`, never to the replica.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.codec import DecodeError, Reader, Writer
from consensus.types import (
    MAX_BLOCK_TXS_CEILING,
    MAX_TX_BYTES_CEILING,
    SIG_LEN,
    Block,
    Certificate,
    Vote,
)

MAX_BLOCKS_PER_MESSAGE = 256
MAX_HASHES_PER_REQUEST = 256
MAX_CERT_VIEWS_PER_REQUEST = 64
BLOB_DIGEST_LEN = 32
# Largest blob range one request may ask for (and one chunk may carry): big enough to keep a link
# busy, small enough that a few outstanding chunks per download stay a bounded amount of memory.
MAX_BLOB_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Proposal:
    """A leader's block; `signature` is the leader's own notarize vote for it."""

    block: Block
    signature: bytes


@dataclass(frozen=True, slots=True)
class VoteMsg:
    vote: Vote


@dataclass(frozen=True, slots=True)
class CertificateMsg:
    cert: Certificate


@dataclass(frozen=True, slots=True)
class TxGossip:
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Ask a peer for blocks by hash (used for notarized, not yet final, ancestors)."""

    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BlockResponse:
    blocks: tuple[Block, ...]


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Ask a peer for finalized blocks starting at `from_height`."""

    from_height: int
    max_blocks: int


@dataclass(frozen=True, slots=True)
class SyncResponse:
    """Consecutive finalized blocks; `proof` finalizes the last one (or a descendant in `blocks`)."""

    blocks: tuple[Block, ...]
    proof: Certificate | None


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    """Ask peers for the certificates of views we missed (e.g. after a restart)."""

    views: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Status:
    view: int
    finalized_height: int


@dataclass(frozen=True, slots=True)
class BlobOffer:
    """Tells peers "I hold the blob with this SHA-256 (`size` bytes, at least 1); you will need it"."""

    digest: bytes
    size: int


@dataclass(frozen=True, slots=True)
class BlobRequest:
    """Ask one peer for `length` bytes (1..MAX_BLOB_CHUNK_BYTES) of a blob, from `offset`."""

    digest: bytes
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class BlobChunk:
    """The answer to a BlobRequest: `data` at `offset` of a blob of `total` bytes.

    `total == 0` with empty `data` means "I don't have it". Otherwise the range lies within `total`.
    """

    digest: bytes
    offset: int
    total: int
    data: bytes


Message = (
    Proposal
    | VoteMsg
    | CertificateMsg
    | TxGossip
    | BlockRequest
    | BlockResponse
    | SyncRequest
    | SyncResponse
    | Status
    | CertificateRequest
    | BlobOffer
    | BlobRequest
    | BlobChunk
)

_TAGS: dict[type, int] = {
    Proposal: 1,
    VoteMsg: 2,
    CertificateMsg: 3,
    TxGossip: 4,
    BlockRequest: 5,
    BlockResponse: 6,
    SyncRequest: 7,
    SyncResponse: 8,
    Status: 9,
    CertificateRequest: 10,
    BlobOffer: 11,
    BlobRequest: 12,
    BlobChunk: 13,
}


def encode_message(msg: Message) -> bytes:
    w = Writer().u8(_TAGS[type(msg)])
    match msg:
        case Proposal(block, sig):
            block.write(w)
            w.fixed(sig)
        case VoteMsg(vote):
            vote.write(w)
        case CertificateMsg(cert):
            cert.write(w)
        case TxGossip(txs):
            w.u32(len(txs))
            for tx in txs:
                w.var(tx)
        case BlockRequest(hashes):
            w.u32(len(hashes))
            for h in hashes:
                w.fixed(h)
        case BlockResponse(blocks):
            w.u32(len(blocks))
            for b in blocks:
                b.write(w)
        case SyncRequest(from_height, max_blocks):
            w.u64(from_height).u32(max_blocks)
        case SyncResponse(blocks, proof):
            w.u32(len(blocks))
            for b in blocks:
                b.write(w)
            if proof is None:
                w.u8(0)
            else:
                w.u8(1)
                proof.write(w)
        case Status(view, finalized_height):
            w.u64(view).u64(finalized_height)
        case CertificateRequest(views):
            w.u32(len(views))
            for v in views:
                w.u64(v)
        case BlobOffer(digest, size):
            w.fixed(digest).u64(size)
        case BlobRequest(digest, offset, length):
            w.fixed(digest).u64(offset).u32(length)
        case BlobChunk(digest, offset, total, data):
            w.fixed(digest).u64(offset).u64(total).var(data)
    return w.getvalue()


def decode_message(data: bytes) -> Message:
    r = Reader(data)
    tag = r.u8()
    msg: Message
    if tag == 1:
        msg = Proposal(Block.read(r), r.fixed(SIG_LEN))
    elif tag == 2:
        msg = VoteMsg(Vote.read(r))
    elif tag == 3:
        msg = CertificateMsg(Certificate.read(r))
    elif tag == 4:
        n = r.count(MAX_BLOCK_TXS_CEILING)
        msg = TxGossip(tuple(r.var(MAX_TX_BYTES_CEILING) for _ in range(n)))
    elif tag == 5:
        n = r.count(MAX_HASHES_PER_REQUEST)
        msg = BlockRequest(tuple(r.fixed(32) for _ in range(n)))
    elif tag == 6:
        n = r.count(MAX_BLOCKS_PER_MESSAGE)
        msg = BlockResponse(tuple(Block.read(r) for _ in range(n)))
    elif tag == 7:
        msg = SyncRequest(r.u64(), r.u32())
    elif tag == 8:
        n = r.count(MAX_BLOCKS_PER_MESSAGE)
        blocks = tuple(Block.read(r) for _ in range(n))
        has_proof = r.u8()
        if has_proof not in (0, 1):
            raise DecodeError("bad proof flag")
        msg = SyncResponse(blocks, Certificate.read(r) if has_proof else None)
    elif tag == 9:
        msg = Status(r.u64(), r.u64())
    elif tag == 10:
        n = r.count(MAX_CERT_VIEWS_PER_REQUEST)
        msg = CertificateRequest(tuple(r.u64() for _ in range(n)))
    elif tag == 11:
        digest, size = r.fixed(BLOB_DIGEST_LEN), r.u64()
        if size == 0:
            raise DecodeError("empty blob offered")
        msg = BlobOffer(digest, size)
    elif tag == 12:
        digest, offset, length = r.fixed(BLOB_DIGEST_LEN), r.u64(), r.u32()
        if not 0 < length <= MAX_BLOB_CHUNK_BYTES:
            raise DecodeError(f"blob request length {length} not in 1..{MAX_BLOB_CHUNK_BYTES}")
        msg = BlobRequest(digest, offset, length)
    elif tag == 13:
        digest, offset, total = r.fixed(BLOB_DIGEST_LEN), r.u64(), r.u64()
        data = r.var(MAX_BLOB_CHUNK_BYTES)
        if total == 0 and data:
            raise DecodeError("data in a blob chunk that says it has none")
        if total and offset + len(data) > total:
            raise DecodeError("blob chunk extends beyond the blob")
        msg = BlobChunk(digest, offset, total, data)
    else:
        raise DecodeError(f"unknown message tag {tag}")
    r.done()
    return msg
