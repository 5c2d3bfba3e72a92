"""Data availability: which packs a block needs, whether this node holds them, and fetching them.

A validator votes for a block, and applies a final one, only when it holds every pack the
block's pushes name (see `commands.availability`); missing packs are asked of peers by
digest. A pending push whose pack never arrives is evicted from the mempool after
`PACK_WAIT_S`, so a client or peer naming a pack nobody serves cannot occupy it forever.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from adapters.git.store import GitStore
from commands.availability import packs_needed
from consensus.types import Block

log = logging.getLogger(__name__)

#: A pending push whose pack has not arrived after this long is dropped from the mempool.
PACK_WAIT_S = 120.0
_MEMO = 10_000


class PackAvailability:
    def __init__(
        self,
        store: GitStore | None,
        *,
        want: Callable[[str], None],
        evict: Callable[[bytes], None],
        clock: Callable[[], float] = time.monotonic,
        pack_wait_s: float = PACK_WAIT_S,
    ) -> None:
        """`want(digest)` asks peers for a pack (idempotent; any thread); `evict(raw)` drops a
        pending transaction from the mempool."""
        self.store = store
        self._want = want
        self._evict = evict
        self._clock = clock
        self._pack_wait_s = pack_wait_s
        self._lock = threading.Lock()  # the memo is shared by the event loop and the ledger worker
        self._memo: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
        self._unready: OrderedDict[bytes, float] = OrderedDict()  # tx id -> first seen waiting

    def packs_named(self, txs: Sequence[bytes]) -> list[str]:
        """The packs the pushes among `txs` name (memoized per transaction)."""
        found: list[str] = []
        for raw in txs:
            tid = hashlib.sha256(raw).digest()
            with self._lock:
                packs = self._memo.get(tid)
            if packs is None:
                packs = packs_needed(raw)
                with self._lock:
                    self._memo[tid] = packs
                    if len(self._memo) > _MEMO:
                        self._memo.popitem(last=False)
            found.extend(packs)
        return found

    def missing(self, txs: Sequence[bytes]) -> list[str]:
        store = self.store
        if store is None:
            return []
        return [d for d in self.packs_named(txs) if not store.has_pack(d)]

    def block_available(self, block: Block) -> bool:
        """Whether this node holds every pack the block's pushes name; asks peers for the rest."""
        missing = self.missing(block.txs)
        for digest in missing:
            self._want(digest)
        return not missing

    def tx_available(self, raw: bytes) -> bool:
        """Whether a leader may put this transaction in a block (its pack is here; else fetch it)."""
        missing = self.missing((raw,))
        tid = hashlib.sha256(raw).digest()
        if not missing:
            with self._lock:
                self._unready.pop(tid, None)
            return True
        now = self._clock()
        with self._lock:
            since = self._unready.setdefault(tid, now)
            expired = now - since > self._pack_wait_s
            if expired:
                del self._unready[tid]
            while len(self._unready) > _MEMO:
                self._unready.popitem(last=False)
        if expired:
            log.warning("dropping pending push %s: its pack never arrived", tid.hex()[:16])
            self._evict(raw)
            return False
        for digest in missing:
            self._want(digest)
        return False
