"""The mempool: pending transactions waiting for a block, and the consensus application on top of it.

Pure and deterministic, no I/O. The node's host adds transactions it receives (from
clients or gossip), the leader's replica asks `MempoolApp.build_payload` for a batch,
and finalized blocks remove their transactions.

- `Mempool` keeps transactions in arrival (FIFO) order, deduplicated by transaction id,
  bounded by count and bytes, and refuses ids committed recently so a gossip echo that
  arrives after a transaction is final does not bring it back.
- `MempoolApp` is the `consensus.interface.Application` used until the ledger exists.
  Its app hash is a running commitment to the log (`chain_app_hash`), which the ledger
  issue replaces with a real state hash.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Set
from enum import Enum

from consensus.interface import Verdict
from consensus.types import Block, Limits, sha256, tx_id

_APP_HASH_DOMAIN = b"stele/txlog/v1"

#: How many committed transaction ids the mempool remembers to refuse late echoes.
DEFAULT_RECENT_COMMITTED = 100_000


def chain_app_hash(parent: Block) -> bytes:
    """The app hash a block on `parent` must carry: a running commitment to the log up to `parent`."""
    return sha256(_APP_HASH_DOMAIN + parent.app_hash + parent.hash)


class AddResult(Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"  # already pending, or committed recently
    FULL = "full"  # the mempool is at its count or byte bound
    TOO_LARGE = "too_large"  # the transaction alone exceeds max_tx_bytes


class Mempool:
    """Pending transactions in FIFO order, deduplicated by id and bounded in count and bytes."""

    def __init__(
        self,
        *,
        max_txs: int = 50_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_tx_bytes: int = 256 * 1024,
        recent_committed: int = DEFAULT_RECENT_COMMITTED,
    ) -> None:
        if max_txs < 1 or max_bytes < 1 or max_tx_bytes < 1 or recent_committed < 0:
            raise ValueError("mempool bounds must be positive")
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_tx_bytes = max_tx_bytes
        self._txs: OrderedDict[bytes, bytes] = OrderedDict()  # id -> tx, insertion order
        self._bytes = 0
        self._recent_cap = recent_committed
        self._recent: OrderedDict[bytes, None] = OrderedDict()  # committed ids, oldest first

    def add(self, tx: bytes) -> tuple[AddResult, bytes]:
        """Add one transaction; returns the outcome and the transaction id."""
        tid = tx_id(tx)
        if len(tx) > self.max_tx_bytes:
            return AddResult.TOO_LARGE, tid
        if tid in self._txs or tid in self._recent:
            return AddResult.DUPLICATE, tid
        if len(self._txs) >= self.max_txs or self._bytes + len(tx) > self.max_bytes:
            return AddResult.FULL, tid
        self._txs[tid] = tx
        self._bytes += len(tx)
        return AddResult.ADDED, tid

    def take_batch(
        self,
        *,
        max_txs: int,
        max_bytes: int,
        exclude: Set[bytes] = frozenset(),
        ready: Callable[[bytes], bool] | None = None,
    ) -> tuple[bytes, ...]:
        """Up to `max_txs` transactions totalling at most `max_bytes`, oldest first; nothing is removed.

        Ids in `exclude` are skipped, and so are transactions `ready` says are not ready yet
        (e.g. a push whose pack has not arrived). The batch stops at the first transaction that does
        not fit in the remaining bytes, so a large transaction is not starved by smaller
        ones behind it; a transaction larger than `max_bytes` on its own is skipped.
        """
        out: list[bytes] = []
        room = max_bytes
        if max_txs <= 0:
            return ()
        for tid, tx in self._txs.items():
            if tid in exclude or len(tx) > max_bytes:
                continue
            if ready is not None and not ready(tx):
                continue
            if len(tx) > room:
                break
            out.append(tx)
            room -= len(tx)
            if len(out) >= max_txs:
                break
        return tuple(out)

    def remove_committed(self, txs: Iterable[bytes]) -> None:
        """Drop committed transactions and remember their ids so they are not re-added."""
        for tx in txs:
            tid = tx_id(tx)
            old = self._txs.pop(tid, None)
            if old is not None:
                self._bytes -= len(old)
            if self._recent_cap == 0:
                continue
            if tid in self._recent:
                self._recent.move_to_end(tid)
            else:
                self._recent[tid] = None
                if len(self._recent) > self._recent_cap:
                    self._recent.popitem(last=False)

    def discard(self, tx: bytes) -> bool:
        """Drop a pending transaction that can never be proposed (e.g. its data never came).

        Remembered like a committed one, so a gossip echo does not bring it back. Not to
        be called while `take_batch` runs (it iterates the pending transactions).
        """
        present = tx_id(tx) in self._txs
        self.remove_committed((tx,))
        return present

    def committed_recently(self, tid: bytes) -> bool:
        return tid in self._recent

    def __contains__(self, tid: object) -> bool:
        return tid in self._txs

    def __len__(self) -> int:
        return len(self._txs)

    @property
    def size_bytes(self) -> int:
        return self._bytes


class MempoolApp:
    """`consensus.interface.Application` over a `Mempool`: batches for leaders, checks for validators."""

    def __init__(
        self,
        mempool: Mempool | None = None,
        limits: Limits = Limits(),
        app_hash: Callable[[Block], bytes | None] = chain_app_hash,
        available: Callable[[Block], bool] | None = None,
        tx_ready: Callable[[bytes], bool] | None = None,
    ) -> None:
        """`app_hash(parent)` is the app hash a child of `parent` must carry (None: not known yet).

        The default commits to the log itself; the node passes the ledger's state hash.
        `available(block)` is the data-availability check (False: wait, the host calls
        `on_app_ready` once the data is here); `tx_ready(tx)` keeps a leader from proposing
        a transaction whose data it does not hold yet.
        """
        self.mempool = mempool if mempool is not None else Mempool(max_tx_bytes=limits.max_tx_bytes)
        self.limits = limits
        self.app_hash = app_hash
        self.available = available
        self.tx_ready = tx_ready

    def build_payload(
        self, parent: Block, pending: tuple[Block, ...], now_ms: int
    ) -> tuple[tuple[bytes, ...], bytes] | None:
        app_hash = self.app_hash(parent)
        if app_hash is None:
            return None
        exclude: set[bytes] = set()
        for b in pending:
            exclude.update(tx_id(tx) for tx in b.txs)
        txs = self.mempool.take_batch(
            max_txs=self.limits.max_block_txs,
            max_bytes=self.limits.max_block_bytes,
            exclude=exclude,
            ready=self.tx_ready,
        )
        # take_batch already skips transactions over max_bytes; also honour max_tx_bytes,
        # which may be smaller than the mempool's own bound.
        txs = tuple(tx for tx in txs if len(tx) <= self.limits.max_tx_bytes)
        return txs, app_hash

    def verify_block(self, block: Block, parent: Block) -> Verdict:
        expected = self.app_hash(parent)
        if expected is None:
            return Verdict.WAIT
        if block.app_hash != expected:
            return Verdict.REJECT
        limits = self.limits
        if len(block.txs) > limits.max_block_txs:
            return Verdict.REJECT
        total = 0
        seen: set[bytes] = set()
        for tx in block.txs:
            if len(tx) > limits.max_tx_bytes:
                return Verdict.REJECT
            total += len(tx)
            tid = tx_id(tx)
            if tid in seen:
                return Verdict.REJECT
            seen.add(tid)
        if total > limits.max_block_bytes:
            return Verdict.REJECT
        if self.available is not None and not self.available(block):
            return Verdict.WAIT
        return Verdict.ACCEPT

    def on_finalized(self, block: Block) -> None:
        self.mempool.remove_committed(block.txs)
