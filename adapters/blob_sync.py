"""Content-addressed blob transfer between validators (git packs today, build artifacts later).

Why it looks like this:
- Data availability: a validator must hold every pack a block names before it votes for the
  block, so the host calls `want(digest)` and waits for `on_ready(digest)`. A wanted blob is
  fetched from one peer at a time, rotating on "don't have", stalls and disconnects (resuming from
  the bytes already received), and retried with capped backoff until it is present. `offer()`
  right after a local push lets peers fetch it before any block names it (bounded retries).
- Blobs can be hundreds of MiB: they move in chunks (default 1 MiB) with a small window of
  outstanding requests per download (default 4), are written straight to a temp file while their
  SHA-256 is computed incrementally, and are served by reading one chunk at a time; a server
  defers requests while the requesting peer's send queue is full (`queued_bytes`). Nothing ever
  holds a whole blob in memory, and no more than `window` chunks per download are in flight.
- Peers may be Byzantine: only a chunk answering an outstanding request to the peer being asked is
  taken, the size a peer claims may not change, and the digest is checked at the end (a mismatch
  discards everything, blames the peers that served the bytes and starts again from offset 0 with
  another peer). Every table is bounded; bad input is counted in `dropped` and never raises.

Wiring contract (for ConsensusHost; everything runs on its event loop):

    self.blobs = BlobSync(
        source=packs,                       # a BlobSource over git/packs/sha256/<digest>.pack
        send=lambda peer, msg: self.p2p.send(peer, encode_message(msg)),
        peers=lambda: sorted(self.p2p.connected()),
        tmp_dir=data_dir / "blobs.tmp",     # owned by BlobSync (stale *.part files are removed);
                                            # same file system as the quarantine, so accept() can
                                            # os.replace() the file into place
        max_blob_bytes=git_store.max_pack_bytes,
        on_ready=self._on_blob_ready,       # e.g. re-check proposals waiting for data
        queued_bytes=self.p2p.queued_bytes, # optional, lets the server pace itself
    )

- `_on_frame`: after `decode_message`, route `BlobOffer | BlobRequest | BlobChunk` to
  `self.blobs.on_message(peer, msg)` and return (the replica counts them as unexpected).
- After a push is quarantined locally: `self.blobs.offer(digest_hex)`.
- Verifying a block that names a pack the source lacks: `self.blobs.want(digest_hex)` and answer
  "wait"; `on_ready(digest_hex)` says it is now present. `want` is idempotent and cheap, so it
  may be called on every re-verification. `forget(digest_hex)` when it is no longer needed;
  `rejected(digest_hex)` is True when the content was fetched but `accept` refused it.
- `await self.blobs.stop()` before `p2p.stop()`; `status()` and `dropped` feed the metrics.

`BlobSource.accept(digest_hex, path)` receives a complete temp file whose size and SHA-256
already match; it must move or copy the file before returning (BlobSync deletes whatever is left
at `path` afterwards) and return False only for content that is invalid for good.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from consensus.messages import MAX_BLOB_CHUNK_BYTES, BlobChunk, BlobOffer, BlobRequest, Message

log = logging.getLogger(__name__)

_DIGEST_HEX = re.compile(r"[0-9a-f]{64}")
_PART = ".part"
# Deferred requests are retried this often while a peer's send queue is above the high-water mark.
_SERVE_POLL_S = 0.01


class BlobSource(Protocol):
    """Where local blobs live (for git: the pack quarantine). Digests are lowercase hex SHA-256."""

    def has(self, digest_hex: str) -> bool: ...

    def size(self, digest_hex: str) -> int | None: ...

    def read(self, digest_hex: str, offset: int, length: int) -> bytes: ...

    async def accept(self, digest_hex: str, path: Path) -> bool: ...


@dataclass(eq=False)
class _Transfer:
    """One blob being fetched: its progress (kept across peers) and the session with one peer."""

    hex: str
    digest: bytes
    wanted: bool
    owner: int | None = None  # the peer whose offer created an offer-only transfer
    offerers: list[int] = field(default_factory=list)
    blame: collections.Counter[int] = field(default_factory=collections.Counter)
    tried: set[int] = field(default_factory=set)  # peers asked in the current round
    attempts: int = 0  # failed rounds
    not_before: float = 0.0
    # progress: `received` bytes of a blob of `size` bytes are in `path` and hashed into `sha`
    size: int | None = None
    received: int = 0
    sha: hashlib._Hash = field(default_factory=hashlib.sha256)
    path: Path | None = None
    file: BinaryIO | None = None
    contributors: set[int] = field(default_factory=set)
    # holds a download slot while asking `peer` or while `accept` runs
    active: bool = False
    verifying: bool = False
    peer: int | None = None
    confirmed: bool = False  # `peer` has answered once with a size consistent with our progress
    outstanding: dict[int, int] = field(default_factory=dict)  # offset -> length asked of `peer`
    arrived: dict[int, bytes] = field(default_factory=dict)  # answered, not yet contiguous
    next_offset: int = 0
    last_progress: float = 0.0


class BlobSync:
    """Fetches wanted and offered blobs from peers by SHA-256 and serves local ones."""

    def __init__(
        self,
        *,
        source: BlobSource,
        send: Callable[[int, Message], bool],
        peers: Callable[[], Sequence[int]],
        tmp_dir: Path,
        max_blob_bytes: int,
        on_ready: Callable[[str], None],
        chunk_bytes: int = 1024 * 1024,
        window: int = 4,
        max_downloads: int = 4,
        stall_timeout_s: float = 10.0,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 5.0,
        max_wanted: int = 1024,
        max_offers: int = 256,
        max_offers_per_peer: int = 64,
        offer_attempts: int = 3,
        max_rejected: int = 4096,
        queued_bytes: Callable[[int], int] | None = None,
        serve_high_water: int = 8 * 1024 * 1024,
        max_deferred_per_peer: int = 64,
    ) -> None:
        if not 0 < chunk_bytes <= MAX_BLOB_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in 1..{MAX_BLOB_CHUNK_BYTES}")
        if max_blob_bytes < 1 or window < 1 or max_downloads < 1 or offer_attempts < 1:
            raise ValueError("max_blob_bytes, window, max_downloads and offer_attempts must be positive")
        if max_wanted < max_downloads or max_offers < 1 or max_offers_per_peer < 1:
            raise ValueError("need max_wanted >= max_downloads and positive offer limits")
        if not 0 < retry_initial_s <= retry_max_s or stall_timeout_s <= 0:
            raise ValueError("need 0 < retry_initial_s <= retry_max_s and a positive stall timeout")
        self._source = source
        self._send_fn = send
        self._peers = peers
        self.tmp_dir = tmp_dir
        self.max_blob_bytes = max_blob_bytes
        self._on_ready = on_ready
        self.chunk_bytes = chunk_bytes
        self.window = window
        self.max_downloads = max_downloads
        self.stall_timeout_s = stall_timeout_s
        self._retry_initial = retry_initial_s
        self._retry_max = retry_max_s
        self._max_wanted = max_wanted
        self._max_offers = max_offers
        self._max_offers_per_peer = max_offers_per_peer
        self._offer_attempts = offer_attempts
        self._max_rejected = max_rejected
        self._queued_bytes = queued_bytes
        self._serve_high_water = serve_high_water
        self._max_deferred = max_deferred_per_peer
        self._tick_s = min(0.25, stall_timeout_s / 4, retry_initial_s)

        self.dropped: collections.Counter[str] = collections.Counter()
        self.stats: collections.Counter[str] = collections.Counter()
        self._transfers: dict[str, _Transfer] = {}
        self._wanted: collections.OrderedDict[str, None] = collections.OrderedDict()  # LRU
        self._active: set[str] = set()
        self._rejected: collections.OrderedDict[str, None] = collections.OrderedDict()
        #: Peers known to hold a blob we hold (they offered it back once they had it), LRU.
        self._holders: collections.OrderedDict[str, set[int]] = collections.OrderedDict()
        self._holder_waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self._deferred: dict[int, collections.deque[BlobRequest]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._serve_handle: asyncio.TimerHandle | None = None
        self._pump_handle: asyncio.Handle | None = None
        self._seq = itertools.count()
        self._rng = random.Random()
        self._stopped = False

        tmp_dir.mkdir(parents=True, exist_ok=True)
        for stale in tmp_dir.glob(f"*{_PART}"):  # left by a crash; never resumable (no hash state)
            with contextlib.suppress(OSError):
                stale.unlink()

    # ------------------------------------------------------------------ public API

    def offer(self, digest_hex: str) -> None:
        """Tells every connected peer we hold this blob (right after a local push)."""
        if self._stopped:
            return
        if not _DIGEST_HEX.fullmatch(digest_hex):
            self.dropped["bad_digest"] += 1
            return
        t = self._transfers.get(digest_hex)
        if t is not None and not t.verifying:
            self._finish_present(t)  # it arrived another way while we were fetching it
        size = self._local_size(digest_hex)
        if size is None:
            self.dropped["offer_not_present"] += 1
            return
        msg = BlobOffer(bytes.fromhex(digest_hex), size)
        for peer in self._peers():
            self._send(peer, msg)
        self.stats["offers_sent"] += 1

    def holders(self, digest_hex: str) -> frozenset[int]:
        """Peers known to hold a blob this node holds (they told us, or we fetched it from them)."""
        return frozenset(self._holders.get(digest_hex, ()))

    async def wait_holders(self, digest_hex: str, count: int, timeout_s: float) -> bool:
        """Wait until at least `count` peers are known to hold the blob; False on timeout.

        Lets a node submit a push only once enough validators hold its pack to vote for a
        block naming it at once, instead of stalling the view while they fetch it.
        """
        if len(self._holders.get(digest_hex, ())) >= count:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (digest_hex, count, fut)
        self._holder_waiters.append(entry)
        try:
            await asyncio.wait_for(fut, timeout_s)
            return True
        except TimeoutError:
            return len(self._holders.get(digest_hex, ())) >= count
        finally:
            if entry in self._holder_waiters:
                self._holder_waiters.remove(entry)

    def _note_holder(self, digest_hex: str, peer: int) -> None:
        held = self._holders.get(digest_hex)
        if held is None:
            held = self._holders[digest_hex] = set()
            while len(self._holders) > self._max_wanted:
                self._holders.popitem(last=False)
        else:
            self._holders.move_to_end(digest_hex)
        if len(held) < 256:
            held.add(peer)
        for d, count, fut in self._holder_waiters:
            if d == digest_hex and len(held) >= count and not fut.done():
                fut.set_result(None)

    def _announce(self, t: _Transfer) -> None:
        """Tell the peers we fetched from (or heard of it from) that we hold the blob now."""
        size = self._local_size(t.hex)
        if size is None:
            return
        msg = BlobOffer(t.digest, size)
        for peer in sorted(set(t.offerers) | set(t.contributors)):
            self._send(peer, msg)

    def want(self, digest_hex: str) -> None:
        """Makes sure the blob gets fetched, retrying until present; cheap and idempotent."""
        if self._stopped:
            return
        t = self._transfers.get(digest_hex)
        if t is not None:
            if t.wanted:
                self._wanted.move_to_end(digest_hex)
                return
            t.wanted = True  # an offered blob is now needed: retry it for good, right away
            t.owner = None
            t.attempts = 0
            t.not_before = 0.0
            self._wanted[digest_hex] = None
            self._evict_wanted()
            self._schedule_pump()
            return
        if not _DIGEST_HEX.fullmatch(digest_hex):
            self.dropped["bad_digest"] += 1
            return
        if digest_hex in self._rejected or self._has(digest_hex):
            return
        self._transfers[digest_hex] = _Transfer(digest_hex, bytes.fromhex(digest_hex), wanted=True)
        self._wanted[digest_hex] = None
        self._evict_wanted()
        self._schedule_pump()

    def forget(self, digest_hex: str) -> None:
        """Stops fetching a blob nobody needs any more (e.g. its block was nullified)."""
        t = self._transfers.get(digest_hex)
        if t is not None and not t.verifying:
            self._remove(t)

    def rejected(self, digest_hex: str) -> bool:
        """True if the blob was fetched intact but `accept` refused its content."""
        return digest_hex in self._rejected

    def on_message(self, peer: int, msg: Message) -> None:
        """Handles BlobOffer, BlobRequest and BlobChunk from `peer`; never raises."""
        if self._stopped:
            return
        try:
            match msg:
                case BlobOffer():
                    self._on_offer(peer, msg)
                case BlobRequest():
                    self._on_request(peer, msg)
                case BlobChunk():
                    self._on_chunk(peer, msg)
                case _:
                    self.dropped["unexpected_message"] += 1
        except Exception:
            self.dropped["handler_error"] += 1
            log.exception("blob sync: handling %s from %d failed", type(msg).__name__, peer)

    async def stop(self) -> None:
        """Cancels timers and tasks and deletes every temp file."""
        self._stopped = True
        for handle in (self._tick_handle, self._serve_handle, self._pump_handle):
            if handle is not None:
                handle.cancel()
        self._tick_handle = self._serve_handle = self._pump_handle = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for t in list(self._transfers.values()):
            self._discard_progress(t)
        self._transfers.clear()
        self._wanted.clear()
        self._active.clear()
        self._deferred.clear()
        for part in self.tmp_dir.glob(f"*{_PART}"):
            with contextlib.suppress(OSError):
                part.unlink()

    def status(self) -> dict[str, int]:
        """Gauges and counters for metrics."""
        return {
            "downloads_active": len(self._active),
            "downloads_queued": len(self._transfers) - len(self._active),
            "wanted": len(self._wanted),
            "offered": len(self._transfers) - len(self._wanted),
            "rejected": len(self._rejected),
            "requests_deferred": sum(len(q) for q in self._deferred.values()),
            "bytes_received": self.stats["bytes_received"],
            "bytes_served": self.stats["bytes_served"],
            "chunks_served": self.stats["chunks_served"],
            "blobs_fetched": self.stats["blobs_fetched"],
        }

    # ------------------------------------------------------------------ serving

    def _on_request(self, peer: int, req: BlobRequest) -> None:
        queue = self._deferred.get(peer)
        if queue is None and not self._backlogged(peer):
            self._serve(peer, req)
            return
        if queue is None:
            queue = self._deferred[peer] = collections.deque()
        if len(queue) >= self._max_deferred:
            self.dropped["serve_backlog_full"] += 1
            return
        queue.append(req)  # behind earlier ones: answers to a peer stay in request order
        self.stats["serve_deferrals"] += 1
        if self._serve_handle is None:
            self._serve_handle = asyncio.get_running_loop().call_later(_SERVE_POLL_S, self._drain_deferred)

    def _backlogged(self, peer: int) -> bool:
        return self._queued_bytes is not None and self._queued_bytes(peer) >= self._serve_high_water

    def _drain_deferred(self) -> None:
        self._serve_handle = None
        if self._stopped:
            return
        connected = set(self._peers())
        for peer, queue in list(self._deferred.items()):
            if peer not in connected:
                queue.clear()
            while queue and not self._backlogged(peer):
                self._serve(peer, queue.popleft())
            if not queue:
                del self._deferred[peer]
        if self._deferred:
            self._serve_handle = asyncio.get_running_loop().call_later(_SERVE_POLL_S, self._drain_deferred)

    def _serve(self, peer: int, req: BlobRequest) -> None:
        """Answers from the local blob, reading only the requested chunk."""
        digest_hex = req.digest.hex()
        size = self._local_size(digest_hex)
        if size is None:
            self.stats["requests_unavailable"] += 1
            self._send(peer, BlobChunk(req.digest, req.offset, 0, b""))
            return
        if req.offset >= size:
            self.dropped["request_out_of_range"] += 1
            self._send(peer, BlobChunk(req.digest, req.offset, size, b""))
            return
        length = min(req.length, size - req.offset)
        try:
            data = self._source.read(digest_hex, req.offset, length)
        except Exception:
            log.exception("blob sync: reading %s failed", digest_hex)
            data = b""
        if len(data) != length:
            self.dropped["serve_read_error"] += 1
            self._send(peer, BlobChunk(req.digest, req.offset, 0, b""))
            return
        if self._send(peer, BlobChunk(req.digest, req.offset, size, data)):
            self.stats["chunks_served"] += 1
            self.stats["bytes_served"] += length
        else:
            self.dropped["serve_send_failed"] += 1

    # ------------------------------------------------------------------ offers

    def _on_offer(self, peer: int, offer: BlobOffer) -> None:
        if offer.size > self.max_blob_bytes:
            self.dropped["blob_too_large"] += 1
            return
        digest_hex = offer.digest.hex()
        t = self._transfers.get(digest_hex)
        if t is not None:
            if peer not in t.offerers and len(t.offerers) < 256:
                t.offerers.append(peer)
            if not t.active:
                t.not_before = 0.0  # a new source: try now rather than after the backoff
                self._schedule_pump()
            return
        if digest_hex in self._rejected or self._has(digest_hex):
            self.stats["offers_ignored"] += 1  # held already, or refused before
            if digest_hex not in self._rejected:
                self._note_holder(digest_hex, peer)
            return
        offered = [x for x in self._transfers.values() if not x.wanted]
        if len(offered) >= self._max_offers or (
            sum(1 for x in offered if x.owner == peer) >= self._max_offers_per_peer
        ):
            self.dropped["too_many_offers"] += 1
            return
        t = _Transfer(digest_hex, offer.digest, wanted=False, owner=peer, offerers=[peer])
        self._transfers[digest_hex] = t
        self._schedule_pump()

    # ------------------------------------------------------------------ downloading

    def _on_chunk(self, peer: int, chunk: BlobChunk) -> None:
        t = self._transfers.get(chunk.digest.hex())
        if t is None or t.peer != peer or chunk.offset not in t.outstanding:
            self.dropped["unsolicited_chunk"] += 1
            return
        length = t.outstanding.pop(chunk.offset)
        if chunk.total == 0:
            self.stats["peer_lacks_blob"] += 1
            self._next_peer(t)
            return
        if chunk.total > self.max_blob_bytes:
            self.dropped["blob_too_large"] += 1
            self._next_peer(t, blame=1)
            return
        if t.size is not None and chunk.total != t.size:
            if t.confirmed:
                self.dropped["total_mismatch"] += 1
                self._next_peer(t, blame=2)
                return
            # This peer's first answer disagrees with the size the earlier peers claimed: the
            # bytes so far cannot be trusted, so start over with this peer (the digest decides).
            self.dropped["size_disagreement"] += 1
            self._discard_progress(t)
            t.size = chunk.total
            t.confirmed = True
            t.next_offset = 0
            if not self._fill(t):
                self._next_peer(t)
            return
        expected = min(length, chunk.total - chunk.offset)
        if expected <= 0 or len(chunk.data) != expected:
            self.dropped["bad_chunk_length"] += 1
            self._next_peer(t, blame=2)
            return
        t.size = chunk.total
        t.confirmed = True
        t.arrived[chunk.offset] = chunk.data
        try:
            self._absorb(t, peer)
        except OSError:
            self.dropped["tmp_write_error"] += 1
            log.exception("blob sync: writing %s under %s failed", t.hex, self.tmp_dir)
            self._discard_progress(t)
            self._fail_round(t)
            return
        if t.received == t.size:
            self._complete(t)
        elif not self._fill(t):
            self._next_peer(t)

    def _absorb(self, t: _Transfer, peer: int) -> None:
        """Writes and hashes whatever is now contiguous with the bytes already received."""
        while (data := t.arrived.pop(t.received, None)) is not None:
            if t.file is None:
                if t.path is None:
                    t.path = self.tmp_dir / f"{t.hex}-{next(self._seq)}{_PART}"
                    t.file = open(t.path, "w+b")  # kept open across chunks, closed in _close
                else:
                    t.file = open(t.path, "r+b")  # resuming after a round that kept the bytes
            t.file.seek(t.received)
            t.file.write(data)
            t.sha.update(data)
            t.received += len(data)
            self.stats["bytes_received"] += len(data)
        t.contributors.add(peer)
        t.last_progress = asyncio.get_running_loop().time()

    def _complete(self, t: _Transfer) -> None:
        """All bytes are in: check the digest, then let the source validate and keep the file."""
        self._close(t)
        if t.sha.digest() != t.digest:
            self.dropped["digest_mismatch"] += 1
            weight = 2 if len(t.contributors) == 1 else 1
            for p in t.contributors:
                t.blame[p] += weight
            self._discard_progress(t)
            self._next_peer(t)
            return
        self._end_session(t)
        t.verifying = True
        task = asyncio.get_running_loop().create_task(self._verify(t))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verify(self, t: _Transfer) -> None:
        ok: bool | None = None
        try:
            assert t.path is not None
            ok = bool(await self._source.accept(t.hex, t.path))
        except asyncio.CancelledError:
            raise
        except Exception:
            self.dropped["accept_error"] += 1
            log.exception("blob sync: accepting %s failed", t.hex)
        finally:
            t.verifying = False
            self._discard_progress(t)
        if self._stopped:
            return
        if ok:
            self.stats["blobs_fetched"] += 1
            self._remove(t)
            for peer in t.offerers:
                self._note_holder(t.hex, peer)
            self._announce(t)
            self._ready(t.hex)
        elif ok is False:
            self.dropped["rejected_content"] += 1
            self._rejected[t.hex] = None
            while len(self._rejected) > self._max_rejected:
                self._rejected.popitem(last=False)
            self._remove(t)
        else:
            self._fail_round(t)

    def _fill(self, t: _Transfer) -> bool:
        """Keeps up to `window` requests outstanding (one until the peer confirmed the size)."""
        assert t.peer is not None
        limit = self.window if t.confirmed else 1
        while len(t.outstanding) < limit:
            if t.size is None:
                length = self.chunk_bytes
            elif t.next_offset >= t.size:
                break
            else:
                length = min(self.chunk_bytes, t.size - t.next_offset)
            if not self._send(t.peer, BlobRequest(t.digest, t.next_offset, length)):
                return False
            t.outstanding[t.next_offset] = length
            t.next_offset += length
        return True

    def _start_session(self, t: _Transfer) -> bool:
        """Asks the best untried peer; False when none is left in this round."""
        candidates = [p for p in self._peers() if p not in t.tried and (t.wanted or p in t.offerers)]
        self._rng.shuffle(candidates)  # spread load; then least blamed, offerers first
        candidates.sort(key=lambda p: (t.blame[p], p not in t.offerers))
        for peer in candidates:
            t.peer = peer
            t.confirmed = False
            t.next_offset = t.received
            t.last_progress = asyncio.get_running_loop().time()
            if self._fill(t):
                return True
            t.tried.add(peer)
            self._end_session(t)
        return False

    def _next_peer(self, t: _Transfer, blame: int = 0) -> None:
        """Gives up on the current peer (keeping the bytes received) and asks the next one."""
        if t.peer is not None:
            t.tried.add(t.peer)
            t.blame[t.peer] += blame
        self._end_session(t)
        if not self._start_session(t):
            self._fail_round(t)

    def _end_session(self, t: _Transfer) -> None:
        t.peer = None
        t.confirmed = False
        t.outstanding.clear()
        t.arrived.clear()

    def _fail_round(self, t: _Transfer) -> None:
        """No peer could serve it now: free the slot and retry later (offers only a few times)."""
        self._end_session(t)
        self._release(t)
        t.tried.clear()
        t.attempts += 1
        if not t.wanted:
            if t.attempts >= self._offer_attempts:
                self.stats["offers_abandoned"] += 1
                self._remove(t)
                return
            self._discard_progress(t)  # only wanted blobs keep partial files between rounds
        else:
            self._close(t)
        delay = min(self._retry_max, self._retry_initial * 2 ** min(t.attempts - 1, 30))
        t.not_before = asyncio.get_running_loop().time() + delay * self._rng.uniform(0.5, 1.0)
        self._schedule_pump()

    # ------------------------------------------------------------------ scheduling

    def _schedule_pump(self) -> None:
        """Starts queued downloads on the next loop turn (never recursively from a handler)."""
        if self._pump_handle is None and not self._stopped:
            self._pump_handle = asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Gives free download slots to due transfers, wanted ones first, pre-empting offers."""
        self._pump_handle = None
        if self._stopped:
            return
        now = asyncio.get_running_loop().time()
        due = [t for t in self._transfers.values() if not t.active and t.not_before <= now]
        # Wanted before offered; fresh before ones that keep failing (e.g. digests nobody has).
        due.sort(key=lambda t: (not t.wanted, t.attempts))
        for t in due:
            if self._transfers.get(t.hex) is not t or t.active:
                continue
            if self._has(t.hex):
                self._finish_present(t)
                continue
            if len(self._active) >= self.max_downloads:
                victim = next(
                    (
                        x
                        for x in (self._transfers[h] for h in self._active)
                        if not x.wanted and not x.verifying
                    ),
                    None,
                )
                if not t.wanted or victim is None:
                    continue
                self.stats["offers_preempted"] += 1
                self._end_session(victim)
                self._release(victim)
                self._discard_progress(victim)
            t.active = True
            self._active.add(t.hex)
            t.tried.clear()
            if not self._start_session(t):
                self._fail_round(t)
        if self._transfers:
            self._ensure_tick()  # stalls, disconnects and backoffs are noticed by the tick

    def _ensure_tick(self) -> None:
        if self._tick_handle is None and not self._stopped:
            self._tick_handle = asyncio.get_running_loop().call_later(self._tick_s, self._tick)

    def _tick(self) -> None:
        """Moves on from peers that disconnected or stalled, and wakes transfers whose backoff ended."""
        self._tick_handle = None
        if self._stopped:
            return
        now = asyncio.get_running_loop().time()
        connected = set(self._peers())
        for digest_hex in list(self._active):
            t = self._transfers.get(digest_hex)
            if t is None or t.peer is None:
                continue
            if t.peer not in connected:
                self.stats["peer_lost"] += 1
                self._next_peer(t)
            elif now - t.last_progress > self.stall_timeout_s:
                self.stats["stalls"] += 1
                self._next_peer(t, blame=1)
        self._schedule_pump()  # which re-arms the tick while anything is tracked

    # ------------------------------------------------------------------ helpers

    def _send(self, peer: int, msg: Message) -> bool:
        try:
            return self._send_fn(peer, msg)
        except Exception:
            log.exception("blob sync: send to %d failed", peer)
            return False

    def _has(self, digest_hex: str) -> bool:
        try:
            return self._source.has(digest_hex)
        except Exception:
            log.exception("blob sync: source.has(%s) failed", digest_hex)
            return False

    def _local_size(self, digest_hex: str) -> int | None:
        try:
            size = self._source.size(digest_hex)
        except Exception:
            log.exception("blob sync: source.size(%s) failed", digest_hex)
            return None
        return size if size is not None and size > 0 else None

    def _ready(self, digest_hex: str) -> None:
        try:
            self._on_ready(digest_hex)
        except Exception:
            self.dropped["on_ready_error"] += 1
            log.exception("blob sync: on_ready(%s) failed", digest_hex)

    def _finish_present(self, t: _Transfer) -> None:
        self._remove(t)
        self._ready(t.hex)

    def _evict_wanted(self) -> None:
        """Beyond `max_wanted`, the least recently wanted blobs are forgotten (bounded memory)."""
        for digest_hex in list(self._wanted):
            if len(self._wanted) <= self._max_wanted:
                break
            t = self._transfers[digest_hex]
            if not t.verifying:
                self.dropped["wanted_evicted"] += 1
                self._remove(t)

    def _release(self, t: _Transfer) -> None:
        if t.active:
            t.active = False
            self._active.discard(t.hex)
            self._schedule_pump()

    def _remove(self, t: _Transfer) -> None:
        self._end_session(t)
        self._release(t)
        self._discard_progress(t)
        if self._transfers.get(t.hex) is t:
            del self._transfers[t.hex]
            self._wanted.pop(t.hex, None)

    def _close(self, t: _Transfer) -> None:
        if t.file is not None:
            with contextlib.suppress(OSError):
                t.file.close()
            t.file = None

    def _discard_progress(self, t: _Transfer) -> None:
        self._close(t)
        if t.path is not None:
            with contextlib.suppress(OSError):
                t.path.unlink()
            t.path = None
        t.size = None
        t.received = 0
        t.sha = hashlib.sha256()
        t.contributors.clear()
        t.arrived.clear()
