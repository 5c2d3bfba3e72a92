"""Blocks, votes, certificates and their canonical encodings.

Everything here is immutable and hashed/signed over the canonical bytes that
`encode()` produces, so two nodes always agree on a block hash or a vote digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import IntEnum

from consensus.codec import DecodeError, Reader, Writer

HASH_LEN = 32
SIG_LEN = 64
PUBKEY_LEN = 32
ZERO_HASH = b"\x00" * HASH_LEN

# Hard ceilings for decoding; the configurable limits in `Limits` must stay below these.
MAX_TX_BYTES_CEILING = 4 * 1024 * 1024
MAX_BLOCK_TXS_CEILING = 100_000
MAX_VALIDATORS = 256


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tx_id(tx: bytes) -> bytes:
    """A transaction's id is the SHA-256 of its opaque bytes."""
    return sha256(tx)


def tx_root(txs: tuple[bytes, ...]) -> bytes:
    h = hashlib.sha256(b"stele/txroot/v1")
    for tx in txs:
        h.update(sha256(tx))
    return h.digest()


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits enforced on blocks and transactions (and checked on decode)."""

    max_tx_bytes: int = 256 * 1024
    max_block_txs: int = 1_000
    max_block_bytes: int = 4 * 1024 * 1024
    # A proposer timestamp may be at most this far ahead of the local clock.
    max_clock_drift_ms: int = 2_000


@dataclass(frozen=True, slots=True)
class Block:
    height: int
    view: int
    parent: bytes
    timestamp_ms: int
    proposer: int
    app_hash: bytes
    txs: tuple[bytes, ...]
    hash: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", sha256(self.header_bytes()))

    def header_bytes(self) -> bytes:
        return (
            Writer()
            .fixed(b"stele/block/v1")
            .u64(self.height)
            .u64(self.view)
            .fixed(self.parent)
            .u64(self.timestamp_ms)
            .u16(self.proposer)
            .fixed(self.app_hash)
            .u32(len(self.txs))
            .fixed(tx_root(self.txs))
            .getvalue()
        )

    def size_bytes(self) -> int:
        return sum(len(t) for t in self.txs)

    def write(self, w: Writer) -> None:
        w.u64(self.height).u64(self.view).fixed(self.parent).u64(self.timestamp_ms)
        w.u16(self.proposer).fixed(self.app_hash).u32(len(self.txs))
        for tx in self.txs:
            w.var(tx)

    @staticmethod
    def read(r: Reader) -> Block:
        height, view = r.u64(), r.u64()
        parent = r.fixed(HASH_LEN)
        ts = r.u64()
        proposer = r.u16()
        app_hash = r.fixed(HASH_LEN)
        n = r.count(MAX_BLOCK_TXS_CEILING)
        txs = tuple(r.var(MAX_TX_BYTES_CEILING) for _ in range(n))
        return Block(height, view, parent, ts, proposer, app_hash, txs)

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @staticmethod
    def decode(data: bytes) -> Block:
        r = Reader(data)
        b = Block.read(r)
        r.done()
        return b

    def to_json(self) -> dict[str, object]:
        return {
            "hash": self.hash.hex(),
            "height": self.height,
            "view": self.view,
            "parent": self.parent.hex(),
            "timestamp_ms": self.timestamp_ms,
            "proposer": self.proposer,
            "app_hash": self.app_hash.hex(),
            "tx_count": len(self.txs),
            "tx_ids": [tx_id(t).hex() for t in self.txs],
        }


def genesis_block(chain_id: str, genesis_time_ms: int) -> Block:
    """Height 0, view 0: the implicit, already-final root every chain starts from."""
    return Block(0, 0, sha256(b"stele/genesis/" + chain_id.encode()), genesis_time_ms, 0, ZERO_HASH, ())


class VoteKind(IntEnum):
    NOTARIZE = 1
    NULLIFY = 2
    FINALIZE = 3


_NAMESPACE = {
    VoteKind.NOTARIZE: b"stele/simplex/v1/notarize",
    VoteKind.NULLIFY: b"stele/simplex/v1/nullify",
    VoteKind.FINALIZE: b"stele/simplex/v1/finalize",
}


def vote_message(chain_id: str, kind: VoteKind, view: int, block: bytes) -> bytes:
    """The exact bytes a validator signs: namespace, chain id, view and block hash."""
    cid = chain_id.encode()
    return Writer().fixed(_NAMESPACE[kind]).u16(len(cid)).fixed(cid).u64(view).fixed(block).getvalue()


@dataclass(frozen=True, slots=True)
class Vote:
    kind: VoteKind
    view: int
    block: bytes  # ZERO_HASH for nullify
    signer: int
    signature: bytes

    def write(self, w: Writer) -> None:
        w.u8(self.kind).u64(self.view).fixed(self.block).u16(self.signer).fixed(self.signature)

    @staticmethod
    def read(r: Reader) -> Vote:
        kind = _kind(r.u8())
        return Vote(kind, r.u64(), r.fixed(HASH_LEN), r.u16(), r.fixed(SIG_LEN))

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @staticmethod
    def decode(data: bytes) -> Vote:
        r = Reader(data)
        v = Vote.read(r)
        r.done()
        return v


def _kind(k: int) -> VoteKind:
    try:
        return VoteKind(k)
    except ValueError:
        raise DecodeError(f"unknown vote kind {k}") from None


@dataclass(frozen=True, slots=True)
class Certificate:
    """2f+1 signatures of one kind over one (view, block)."""

    kind: VoteKind
    view: int
    block: bytes
    signatures: tuple[tuple[int, bytes], ...]  # (signer, sig), sorted by signer, distinct

    def write(self, w: Writer) -> None:
        w.u8(self.kind).u64(self.view).fixed(self.block).u16(len(self.signatures))
        for signer, sig in self.signatures:
            w.u16(signer).fixed(sig)

    @staticmethod
    def read(r: Reader) -> Certificate:
        kind = _kind(r.u8())
        view = r.u64()
        block = r.fixed(HASH_LEN)
        n = r.u16()
        if n > MAX_VALIDATORS:
            raise DecodeError("too many signatures")
        sigs = tuple((r.u16(), r.fixed(SIG_LEN)) for _ in range(n))
        return Certificate(kind, view, block, sigs)

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @staticmethod
    def decode(data: bytes) -> Certificate:
        r = Reader(data)
        c = Certificate.read(r)
        r.done()
        return c

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.name.lower(),
            "view": self.view,
            "block": self.block.hex(),
            "signatures": [{"signer": s, "signature": sig.hex()} for s, sig in self.signatures],
        }
