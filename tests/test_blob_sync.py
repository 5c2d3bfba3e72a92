"""Tests for content-addressed blob transfer (adapters/blob_sync.py) and the Blob* wire messages.

Most tests connect several BlobSync instances through an in-memory transport that delivers
encoded frames on later loop turns, in order per link (like the real streams); links can be cut.
One test runs over real Noise links (adapters.p2p). Timeouts are only guards against hangs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from adapters.blob_sync import BlobSync
from adapters.p2p import P2PNetwork, PeerAddress
from consensus.codec import DecodeError, Writer
from consensus.messages import (
    MAX_BLOB_CHUNK_BYTES,
    BlobChunk,
    BlobOffer,
    BlobRequest,
    Message,
    decode_message,
    encode_message,
)

KiB = 1024
MiB = 1024 * 1024
CHUNK = 64 * KiB


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]], cap: float = 30.0) -> None:
    async def capped() -> None:
        await asyncio.wait_for(coro_fn(), cap)

    asyncio.run(capped())


async def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class MemSource:
    """A BlobSource in memory; `corrupt` serves wrong bytes, `valid` decides accept()."""

    def __init__(
        self, blobs: dict[str, bytes] | None = None, *, corrupt: bool = False, valid: bool = True
    ) -> None:
        self.blobs = dict(blobs or {})
        self.corrupt = corrupt
        self.valid = valid
        self.accepted: list[str] = []

    def has(self, digest_hex: str) -> bool:
        return digest_hex in self.blobs

    def size(self, digest_hex: str) -> int | None:
        blob = self.blobs.get(digest_hex)
        return None if blob is None else len(blob)

    def read(self, digest_hex: str, offset: int, length: int) -> bytes:
        data = self.blobs[digest_hex][offset : offset + length]
        return bytes(b ^ 0x5A for b in data) if self.corrupt else data

    async def accept(self, digest_hex: str, path: Path) -> bool:
        data = path.read_bytes()
        assert digest_of(data) == digest_hex  # BlobSync only hands over matching files
        self.accepted.append(digest_hex)
        if not self.valid:
            return False
        self.blobs[digest_hex] = data
        return True


class Node:
    def __init__(self, index: int, sync: BlobSync, source: MemSource, ready: list[str]) -> None:
        self.index = index
        self.sync = sync
        self.source = source
        self.ready = ready


class MemNet:
    """A full mesh of ordered in-memory links; frames go through the real codec."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.nodes: dict[int, Node] = {}
        self.up: set[frozenset[int]] = set()
        self.generation: dict[frozenset[int], int] = {}
        # Called for every delivery; returning False drops the message.
        self.hook: Callable[[int, int, Message], bool] | None = None

    def add(self, index: int, source: MemSource, **kwargs: Any) -> Node:
        ready: list[str] = []
        params: dict[str, Any] = {
            "chunk_bytes": CHUNK,
            "stall_timeout_s": 1.0,
            "retry_initial_s": 0.05,
            "retry_max_s": 0.2,
            "max_blob_bytes": 64 * MiB,
        }
        params.update(kwargs)
        sync = BlobSync(
            source=source,
            send=lambda peer, msg: self.send(index, peer, msg),
            peers=lambda: sorted(p for p in self.nodes if frozenset((index, p)) in self.up),
            tmp_dir=self.tmp_path / f"tmp{index}",
            on_ready=ready.append,
            **params,
        )
        for other in self.nodes:
            self.connect(index, other)
        node = self.nodes[index] = Node(index, sync, source, ready)
        return node

    def connect(self, a: int, b: int) -> None:
        key = frozenset((a, b))
        self.up.add(key)
        self.generation[key] = self.generation.get(key, 0) + 1

    def disconnect(self, a: int, b: int) -> None:
        key = frozenset((a, b))
        self.up.discard(key)
        self.generation[key] = self.generation.get(key, 0) + 1

    def send(self, src: int, dst: int, msg: Message) -> bool:
        key = frozenset((src, dst))
        if key not in self.up:
            return False
        frame = encode_message(msg)
        asyncio.get_running_loop().call_soon(self._deliver, src, dst, frame, self.generation[key])
        return True

    def _deliver(self, src: int, dst: int, frame: bytes, generation: int) -> None:
        key = frozenset((src, dst))
        if key not in self.up or self.generation[key] != generation:
            return  # the link broke while the frame was in flight
        msg = decode_message(frame)
        if self.hook is not None and not self.hook(src, dst, msg):
            return
        self.nodes[dst].sync.on_message(src, msg)

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.sync.stop()


def parts(node: Node) -> list[Path]:
    return list(node.sync.tmp_dir.glob("*.part"))


# ---------------------------------------------------------------------------- codec


def test_blob_messages_round_trip() -> None:
    d = bytes(range(32))
    for msg in (
        BlobOffer(d, 1),
        BlobOffer(d, 2**64 - 1),
        BlobRequest(d, 0, 1),
        BlobRequest(d, 2**40, MAX_BLOB_CHUNK_BYTES),
        BlobChunk(d, 7, 0, b""),  # "don't have"
        BlobChunk(d, 0, 3, b"abc"),
        BlobChunk(d, 5, 5, b""),  # nothing left at the end of the blob
        BlobChunk(d, 0, 2**33, os.urandom(MAX_BLOB_CHUNK_BYTES)),
    ):
        assert decode_message(encode_message(msg)) == msg


@pytest.mark.parametrize(
    "frame",
    [
        Writer().u8(11).fixed(b"\x01" * 31).getvalue(),  # short digest
        Writer().u8(11).fixed(b"\x01" * 32).u64(0).getvalue(),  # empty blob
        Writer().u8(11).fixed(b"\x01" * 32).u64(5).u8(0).getvalue(),  # trailing byte
        Writer().u8(12).fixed(b"\x01" * 32).u64(0).u32(0).getvalue(),  # zero-length request
        Writer().u8(12).fixed(b"\x01" * 32).u64(0).u32(MAX_BLOB_CHUNK_BYTES + 1).getvalue(),
        Writer().u8(12).fixed(b"\x01" * 32).u64(0).getvalue(),  # truncated
        Writer().u8(13).fixed(b"\x01" * 32).u64(0).u64(0).var(b"x").getvalue(),  # "none" with data
        Writer().u8(13).fixed(b"\x01" * 32).u64(2).u64(3).var(b"xy").getvalue(),  # beyond total
        Writer().u8(13).fixed(b"\x01" * 32).u64(0).u64(9).u32(MAX_BLOB_CHUNK_BYTES + 1).getvalue(),
        Writer().u8(13).fixed(b"\x01" * 32).u64(0).u64(9).u32(5).fixed(b"abc").getvalue(),
        Writer().u8(14).getvalue(),  # unknown tag
    ],
)
def test_malformed_blob_messages_are_rejected(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_message(frame)


def test_replica_counts_blob_messages_as_unexpected() -> None:
    """If a host forgot to route them, the replica drops blob messages instead of misreading them."""
    from tests.test_replica import make

    replica, _ = make(0)
    for msg in (BlobOffer(b"\0" * 32, 1), BlobRequest(b"\0" * 32, 0, 1), BlobChunk(b"\0" * 32, 0, 0, b"")):
        replica.on_message(1, msg, 1_000_000)
    assert replica.dropped["unexpected_message"] == 3


# ---------------------------------------------------------------------------- transfers


def test_the_offering_node_learns_who_holds_its_blob(tmp_path: Path) -> None:
    """Peers that fetched an offered blob say so, so a push can wait for a quorum to hold its pack."""
    blob = os.urandom(2 * MiB + 7)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        holder = net.add(0, MemSource({d: blob}))
        others = [net.add(i, MemSource()) for i in (1, 2, 3)]
        try:
            assert holder.sync.holders(d) == frozenset()
            assert not await holder.sync.wait_holders(d, 1, 0.01)  # nobody has it yet
            holder.sync.offer(d)
            assert await holder.sync.wait_holders(d, 3, 10)
            assert holder.sync.holders(d) == {1, 2, 3}
            for n in others:  # and each knows the node it fetched from holds it
                assert 0 in n.sync.holders(d)
        finally:
            await net.stop()

    run(scenario)


def test_offer_fetches_a_multi_chunk_blob_everywhere(tmp_path: Path) -> None:
    blob = os.urandom(5 * MiB + 123)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        holder = net.add(0, MemSource({d: blob}))
        others = [net.add(i, MemSource()) for i in (1, 2, 3)]
        try:
            holder.sync.offer(d)
            await wait_until(lambda: all(n.ready == [d] for n in others), what="offer fetched")
            for n in others:
                assert n.source.blobs[d] == blob
                assert n.source.accepted == [d]
                assert parts(n) == []
                st = n.sync.status()
                assert st["bytes_received"] == len(blob)
                assert st["blobs_fetched"] == 1
                assert st["downloads_active"] == st["downloads_queued"] == 0
                assert not n.sync.dropped
            assert holder.sync.status()["bytes_served"] == 3 * len(blob)
            # Offers of something everyone has start nothing.
            holder.sync.offer(d)
            others[0].sync.want(d)
            await wait_until(
                lambda: all(n.sync.stats["offers_ignored"] == 1 for n in others), what="offers handled"
            )
            assert all(n.sync.status()["downloads_queued"] == 0 for n in others)
        finally:
            await net.stop()

    run(scenario)


def test_want_rotates_through_peers_and_retries_until_a_holder_appears(tmp_path: Path) -> None:
    blob = os.urandom(300 * KiB)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        wanting = net.add(0, MemSource())
        net.add(1, MemSource())
        net.add(2, MemSource())
        holder = net.add(3, MemSource({d: blob}))
        net.disconnect(0, 3)
        try:
            wanting.sync.want(d)
            wanting.sync.want(d)  # idempotent
            # Both connected peers say "don't have", more than once (retried with backoff).
            await wait_until(lambda: wanting.sync.stats["peer_lacks_blob"] >= 4, what="rotation")
            assert wanting.ready == [] and wanting.sync.status()["wanted"] == 1
            net.connect(0, 3)
            await wait_until(lambda: wanting.ready == [d], what="fetched from the holder")
            assert wanting.source.blobs[d] == blob
            assert holder.sync.status()["bytes_served"] == len(blob)
            assert wanting.sync.status()["wanted"] == 0
        finally:
            await net.stop()

    run(scenario)


def test_download_resumes_from_another_peer_after_a_disconnect(tmp_path: Path) -> None:
    blob = os.urandom(2 * MiB)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        wanting = net.add(0, MemSource())
        holders = {i: net.add(i, MemSource({d: blob})) for i in (1, 2)}
        chunks: dict[int, int] = {1: 0, 2: 0}
        cut: list[int] = []

        def hook(src: int, dst: int, msg: Message) -> bool:
            if isinstance(msg, BlobChunk) and dst == 0 and msg.data:
                chunks[src] += 1
                if chunks[src] == 8 and not cut:
                    cut.append(src)
                    net.disconnect(0, src)  # this chunk and everything after it is lost
                    return False
            return True

        net.hook = hook
        try:
            wanting.sync.want(d)
            await wait_until(lambda: wanting.ready == [d], what="resumed download")
            assert wanting.source.blobs[d] == blob
            first = cut[0]
            second = 3 - first
            assert holders[second].sync.status()["bytes_served"] > 0
            # Resumed, not restarted: every byte was taken exactly once, 7 chunks from the first peer.
            assert wanting.sync.status()["bytes_received"] == len(blob)
            assert holders[second].sync.stats["chunks_served"] == len(blob) // CHUNK - 7
            assert wanting.sync.stats["peer_lost"] == 1
        finally:
            await net.stop()

    run(scenario)


def test_byzantine_bytes_are_discarded_and_refetched_from_an_honest_peer(tmp_path: Path) -> None:
    blob = os.urandom(1 * MiB + 5)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        wanting = net.add(0, MemSource())
        liar = net.add(1, MemSource({d: blob}, corrupt=True))
        net.add(2, MemSource({d: blob}))
        try:
            liar.sync.offer(d)  # offerers are asked first, so the liar serves first
            wanting.sync.want(d)
            await wait_until(lambda: wanting.ready == [d], what="honest refetch")
            assert wanting.source.blobs[d] == blob
            assert wanting.source.accepted == [d]  # the corrupt copy never reached accept()
            assert wanting.sync.dropped["digest_mismatch"] == 1
            assert liar.sync.status()["bytes_served"] == len(blob)
            assert parts(wanting) == []
        finally:
            await net.stop()

    run(scenario)


def test_invalid_content_is_rejected_and_not_refetched(tmp_path: Path) -> None:
    blob = os.urandom(200 * KiB)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        picky = net.add(0, MemSource(valid=False))
        holder = net.add(1, MemSource({d: blob}))
        try:
            picky.sync.want(d)
            await wait_until(lambda: picky.sync.rejected(d), what="rejection")
            assert picky.source.accepted == [d]
            assert picky.ready == []
            assert picky.sync.dropped["rejected_content"] == 1
            assert parts(picky) == []
            picky.sync.want(d)
            holder.sync.offer(d)
            await wait_until(lambda: picky.source.accepted == [d], what="the blob accepted after a retry")
            assert picky.sync.status()["wanted"] == 0
        finally:
            await net.stop()

    run(scenario)


def test_blobs_over_the_size_limit_are_refused(tmp_path: Path) -> None:
    blob = os.urandom(300 * KiB)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        small = net.add(0, MemSource(), max_blob_bytes=256 * KiB)
        holder = net.add(1, MemSource({d: blob}))
        try:
            holder.sync.offer(d)
            await wait_until(lambda: small.sync.dropped["blob_too_large"] == 1, what="offer refused")
            assert small.sync.status()["offered"] == 0
            small.sync.want(d)  # the holder's answer names a size above the limit
            await wait_until(lambda: small.sync.dropped["blob_too_large"] >= 3, what="chunks refused")
            assert small.ready == [] and small.sync.status()["bytes_received"] == 0
            assert parts(small) == []
        finally:
            await net.stop()

    run(scenario)


def test_stop_deletes_temp_files_and_stale_ones_are_removed_at_start(tmp_path: Path) -> None:
    blob = os.urandom(1 * MiB)
    d = digest_of(blob)
    stale = tmp_path / "tmp0" / "deadbeef-0.part"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left by a crash")

    async def scenario() -> None:
        net = MemNet(tmp_path)
        wanting = net.add(0, MemSource(), stall_timeout_s=60.0)
        assert not stale.exists()
        net.add(1, MemSource({d: blob}))
        delivered = 0

        def hook(src: int, dst: int, msg: Message) -> bool:
            nonlocal delivered
            if isinstance(msg, BlobChunk) and dst == 0:
                delivered += 1
                return delivered <= 3  # then the peer goes silent
            return True

        net.hook = hook
        try:
            wanting.sync.want(d)
            await wait_until(lambda: wanting.sync.status()["bytes_received"] == 3 * CHUNK, what="3 chunks")
            assert len(parts(wanting)) == 1
        finally:
            await net.stop()
        assert parts(wanting) == []
        assert wanting.sync.status()["downloads_active"] == 0
        wanting.sync.want(d)  # stopped: a no-op, nothing scheduled
        assert wanting.sync.status()["wanted"] == 0

    run(scenario)


def test_stalled_peer_is_abandoned_for_another(tmp_path: Path) -> None:
    blob = os.urandom(512 * KiB)
    d = digest_of(blob)

    async def scenario() -> None:
        net = MemNet(tmp_path)
        wanting = net.add(0, MemSource(), stall_timeout_s=0.2)
        staller = net.add(1, MemSource({d: blob}))
        net.add(2, MemSource({d: blob}))

        def hook(src: int, dst: int, msg: Message) -> bool:
            return not (src == 1 and isinstance(msg, BlobChunk) and msg.offset >= 2 * CHUNK)

        net.hook = hook
        try:
            staller.sync.offer(d)  # asked first
            wanting.sync.want(d)
            await wait_until(lambda: wanting.ready == [d], what="fetch past the stall")
            assert wanting.source.blobs[d] == blob
            assert wanting.sync.stats["stalls"] >= 1
        finally:
            await net.stop()

    run(scenario)


# ---------------------------------------------------------------------------- one node, crafted input


class Probe:
    """One BlobSync with a recording transport, for feeding it crafted (Byzantine) messages."""

    def __init__(self, tmp_path: Path, source: MemSource | None = None, **kwargs: Any) -> None:
        self.sent: list[tuple[int, Message]] = []
        self.ready: list[str] = []
        self.connected = [1, 2]
        self.backlog = 0
        params: dict[str, Any] = {"chunk_bytes": CHUNK, "max_blob_bytes": 4 * MiB}
        params.update(kwargs)
        self.source = source or MemSource()
        self.sync = BlobSync(
            source=self.source,
            send=self._send,
            peers=lambda: self.connected,
            tmp_dir=tmp_path / "probe",
            on_ready=self.ready.append,
            queued_bytes=lambda peer: self.backlog,
            **params,
        )

    def _send(self, peer: int, msg: Message) -> bool:
        self.sent.append((peer, msg))
        return True

    def requests(self) -> list[tuple[int, BlobRequest]]:
        return [(p, m) for p, m in self.sent if isinstance(m, BlobRequest)]

    def requested_offset(self, offset: int) -> Callable[[], bool]:
        return lambda: any(r.offset == offset for _, r in self.requests())

    def request_count(self, n: int) -> Callable[[], bool]:
        return lambda: len(self.requests()) == n


def test_crafted_chunks_are_dropped_and_counted(tmp_path: Path) -> None:
    blob = os.urandom(4 * CHUNK)
    d = digest_of(blob)
    raw = bytes.fromhex(d)

    async def scenario() -> None:
        probe = Probe(tmp_path, window=2)
        sync = probe.sync
        try:
            sync.on_message(1, BlobChunk(raw, 0, len(blob), blob[:CHUNK]))
            assert sync.dropped["unsolicited_chunk"] == 1
            sync.want(d)
            await asyncio.sleep(0)
            [(peer, req)] = probe.requests()  # one request until the peer confirms the size
            assert (req.offset, req.length) == (0, CHUNK)
            other = 3 - peer
            sync.on_message(other, BlobChunk(raw, 0, len(blob), blob[:CHUNK]))  # not the one asked
            sync.on_message(peer, BlobChunk(raw, CHUNK, len(blob), blob[CHUNK : 2 * CHUNK]))
            assert sync.dropped["unsolicited_chunk"] == 3
            sync.on_message(peer, BlobChunk(raw, 0, len(blob), blob[:CHUNK]))
            assert sync.status()["bytes_received"] == CHUNK
            assert [(r.offset, r.length) for _, r in probe.requests()[1:]] == [
                (CHUNK, CHUNK),
                (2 * CHUNK, CHUNK),
            ]
            # The size may not change mid-stream: the peer is abandoned, the bytes kept.
            sync.on_message(peer, BlobChunk(raw, CHUNK, len(blob) + 1, blob[CHUNK : 2 * CHUNK]))
            assert sync.dropped["total_mismatch"] == 1
            (p2, r2) = probe.requests()[-1]
            assert p2 == other and (r2.offset, r2.length) == (CHUNK, CHUNK)
            # A short chunk is refused too; no peer is left in this round.
            sync.on_message(other, BlobChunk(raw, CHUNK, len(blob), blob[CHUNK : CHUNK + 10]))
            assert sync.dropped["bad_chunk_length"] == 1
            assert sync.status()["downloads_active"] == 0 and sync.status()["wanted"] == 1
            # The next round (after the backoff) resumes from the bytes already received.
            await wait_until(lambda: len(probe.requests()) == 5, what="retry round")
            p3, r3 = probe.requests()[-1]
            assert (r3.offset, r3.length) == (CHUNK, CHUNK)
            for off in range(CHUNK, len(blob), CHUNK):
                if off > CHUNK:
                    await wait_until(probe.requested_offset(off), what="request")
                sync.on_message(p3, BlobChunk(raw, off, len(blob), blob[off : off + CHUNK]))
            await wait_until(lambda: probe.ready == [d], what="completion")
            assert probe.source.blobs[d] == blob
        finally:
            await sync.stop()

    run(scenario)


def test_serving_reads_per_chunk_never_beyond_the_blob_and_defers_when_backlogged(tmp_path: Path) -> None:
    blob = os.urandom(3 * CHUNK + 7)
    d = digest_of(blob)
    raw = bytes.fromhex(d)

    async def scenario() -> None:
        probe = Probe(tmp_path, MemSource({d: blob}))
        sync = probe.sync
        try:
            sync.on_message(1, BlobRequest(raw, 3 * CHUNK, CHUNK))
            sync.on_message(1, BlobRequest(raw, len(blob), 10))
            sync.on_message(1, BlobRequest(b"\x07" * 32, 0, 10))
            assert probe.sent == [
                (1, BlobChunk(raw, 3 * CHUNK, len(blob), blob[3 * CHUNK :])),
                (1, BlobChunk(raw, len(blob), len(blob), b"")),
                (1, BlobChunk(b"\x07" * 32, 0, 0, b"")),
            ]
            assert sync.dropped["request_out_of_range"] == 1
            probe.sent.clear()
            probe.backlog = 64 * MiB  # the peer's send queue is full: answers wait, in order
            for off in (0, CHUNK):
                sync.on_message(2, BlobRequest(raw, off, CHUNK))
            await wait_until(lambda: sync.status()["requests_deferred"] == 2, what="requests deferred")
            assert probe.sent == []
            probe.backlog = 0
            await wait_until(lambda: len(probe.sent) == 2, what="deferred answers")
            assert [m.offset for _, m in probe.sent if isinstance(m, BlobChunk)] == [0, CHUNK]
            assert sync.status()["requests_deferred"] == 0
        finally:
            await sync.stop()

    run(scenario)


def test_offers_and_wants_are_bounded_and_wanted_blobs_preempt_offers(tmp_path: Path) -> None:
    async def scenario() -> None:
        probe = Probe(tmp_path, max_offers=4, max_offers_per_peer=3, max_wanted=2, max_downloads=1)
        sync = probe.sync
        try:
            for i in range(5):
                sync.on_message(1, BlobOffer(bytes([i]) * 32, 10))
            assert sync.status()["offered"] == 3 and sync.dropped["too_many_offers"] == 2
            sync.on_message(2, BlobOffer(b"\x09" * 32, 10))
            sync.on_message(2, BlobOffer(b"\x0a" * 32, 10))
            assert sync.status()["offered"] == 4 and sync.dropped["too_many_offers"] == 3
            sync.on_message(1, BlobOffer(b"\x0b" * 32, 10 * MiB))  # above max_blob_bytes
            assert sync.dropped["blob_too_large"] == 1
            await asyncio.sleep(0)
            # The only download slot goes to the first offer, asked of its offerer only.
            [(peer, req)] = probe.requests()
            assert (peer, req.digest) == (1, b"\x00" * 32)
            for i in range(3):
                sync.want(bytes([0x20 + i]).hex() * 32)
            assert sync.status()["wanted"] == 2 and sync.dropped["wanted_evicted"] == 1
            sync.want("not hex")
            assert sync.dropped["bad_digest"] == 1
            await asyncio.sleep(0)
            # A wanted blob takes the slot from the offered one.
            assert sync.stats["offers_preempted"] == 1
            assert sync.status()["downloads_active"] == 1
            assert probe.requests()[-1][1].digest == b"\x21" * 32
        finally:
            await sync.stop()

    run(scenario)


def test_an_offered_blob_is_retried_a_few_times_from_its_offerer_only(tmp_path: Path) -> None:
    d = b"\x05" * 32

    async def scenario() -> None:
        probe = Probe(tmp_path, offer_attempts=3, retry_initial_s=0.01, retry_max_s=0.02)
        sync = probe.sync
        try:
            sync.on_message(2, BlobOffer(d, 100))
            for attempt in range(3):
                await wait_until(probe.request_count(attempt + 1), what="request")
                peer, req = probe.requests()[-1]
                assert peer == 2 and req.offset == 0
                sync.on_message(2, BlobChunk(d, 0, 0, b""))  # "don't have" after all
            await wait_until(lambda: sync.stats["offers_abandoned"] == 1, what="abandoned")
            assert sync.status()["offered"] == 0 and len(probe.requests()) == 3
        finally:
            await sync.stop()

    run(scenario)


def test_a_wanted_blob_that_arrives_locally_is_ready_at_once(tmp_path: Path) -> None:
    blob = b"pushed here"
    d = digest_of(blob)

    async def scenario() -> None:
        probe = Probe(tmp_path)
        sync = probe.sync
        try:
            sync.want(d)
            await asyncio.sleep(0)
            assert sync.status()["downloads_active"] == 1
            probe.source.blobs[d] = blob  # e.g. the push was received by this node
            probe.sent.clear()
            sync.offer(d)
            assert probe.ready == [d]
            assert sync.status()["wanted"] == 0 and sync.status()["downloads_active"] == 0
            assert probe.sent == [
                (1, BlobOffer(bytes.fromhex(d), len(blob))),
                (2, BlobOffer(bytes.fromhex(d), len(blob))),
            ]
        finally:
            await sync.stop()

    run(scenario)


# ---------------------------------------------------------------------------- real Noise links


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wire(net: P2PNetwork, source: MemSource, tmp_dir: Path, ready: list[str]) -> BlobSync:
    """BlobSync over a P2PNetwork, as the consensus host wires it."""

    def send(peer: int, msg: Message) -> bool:
        return net.send(peer, encode_message(msg))

    return BlobSync(
        source=source,
        send=send,
        peers=lambda: sorted(net.connected()),
        tmp_dir=tmp_dir,
        max_blob_bytes=16 * MiB,
        on_ready=ready.append,
        queued_bytes=net.queued_bytes,
    )


def test_blob_moves_over_real_p2p_links(tmp_path: Path) -> None:
    blob = os.urandom(3 * MiB + 17)
    d = digest_of(blob)
    seeds = sorted((bytes([9, i + 1]) * 16 for i in range(2)), key=lambda s: bytes(SigningKey(s).verify_key))
    peers = [
        PeerAddress(i, "127.0.0.1", _free_port(), bytes(SigningKey(s).verify_key))
        for i, s in enumerate(seeds)
    ]

    async def scenario() -> None:
        nets: list[P2PNetwork] = []
        syncs: list[BlobSync] = []
        sources = [MemSource({d: blob}), MemSource()]
        ready: list[str] = []
        for i, seed in enumerate(seeds):

            def on_frame(peer: int, frame: bytes, i: int = i) -> None:
                syncs[i].on_message(peer, decode_message(frame))

            net = P2PNetwork(
                chain_id="blob-test",
                seed=seed,
                my_index=i,
                peers=peers,
                listen_host="127.0.0.1",
                listen_port=peers[i].port,
                on_frame=on_frame,
                backoff_initial_s=0.02,
                backoff_max_s=0.3,
            )
            nets.append(net)
            syncs.append(wire(net, sources[i], tmp_path / f"node{i}", ready))
        try:
            for net in nets:
                await net.start()
            await wait_until(lambda: all(n.connected() for n in nets), what="link up")
            syncs[0].offer(d)
            await wait_until(lambda: ready == [d], timeout=20, what="blob over Noise")
            assert sources[1].blobs[d] == blob
            assert syncs[1].status()["bytes_received"] == len(blob)
            assert not syncs[1].dropped and not syncs[0].dropped
        finally:
            for sync in syncs:
                await sync.stop()
            for net in nets:
                await net.stop()

    run(scenario)
