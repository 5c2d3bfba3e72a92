"""Consensus wire messages and their strict codec.

One tag byte followed by the message fields. `decode_message` raises DecodeError
for anything malformed; callers count and drop it.
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
    else:
        raise DecodeError(f"unknown message tag {tag}")
    r.done()
    return msg
