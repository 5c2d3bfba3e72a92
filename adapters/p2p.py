"""Validator-to-validator transport: authenticated, encrypted asyncio TCP links over Noise XX.

Why it looks like this:
- Every link is a Noise XX session whose static key is derived from the validator's Ed25519 key,
  so a peer is authenticated as a specific validator index, and every frame is encrypted.
- Exactly one link per pair: the lower index dials the higher, the higher only accepts. This
  avoids duplicate-connection races without any tie-breaking protocol. A new authenticated
  inbound link replaces an existing one, because the old one is probably dead (peer restarted).
- Dialers retry forever with capped exponential backoff and jitter, since validators restart.
- Sending never blocks consensus: frames go into a bounded per-link queue drained by a writer
  task that batches many frames per `drain()`; a full queue drops the frame and counts it.
- Bad input never crashes the process: it is counted in `dropped` and the link is closed (and
  re-dialed), except oversized frames, which are skipped so the link survives a misconfigured peer.

All methods must be called on the event loop thread that ran `start()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from nacl.signing import SigningKey

from adapters.noise_session import (
    MAX_FRAME_CEILING,
    HandshakeError,
    MalformedFrame,
    NoiseTransport,
    handshake,
    prologue,
    read_message,
    x25519_private_from_seed,
    x25519_public_from_ed25519,
)

log = logging.getLogger(__name__)

# Plaintext bytes taken from the queue per write batch: large enough to amortise drain() and
# AEAD calls, small enough that one link cannot monopolise the event loop.
_WRITE_BATCH_BYTES = 1024 * 1024
_WRITE_HIGH_WATER = 1024 * 1024
_STREAM_LIMIT = 256 * 1024
# Unauthenticated connections still in their handshake; beyond this, new ones are refused at once
# so a flood of idle sockets cannot exhaust memory or file descriptors before the timeout hits.
_MAX_PENDING_HANDSHAKES = 64


@dataclass(frozen=True)
class PeerAddress:
    """Where validator `index` listens, and the Ed25519 key it must prove it holds."""

    index: int
    host: str
    port: int
    pubkey: bytes  # Ed25519 validator public key, 32 bytes


@dataclass
class P2PStats:
    """Counters for metrics and debugging."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    handshakes: int = 0
    handshake_failures: int = 0
    reconnects: int = 0
    connections_replaced: int = 0
    dial_failures: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Link:
    """One authenticated connection to a peer, with its outbound queue."""

    def __init__(self, peer: int, writer: asyncio.StreamWriter, transport: NoiseTransport) -> None:
        self.peer = peer
        self.writer = writer
        self.transport = transport
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.wakeup = asyncio.Event()
        self.closed = False
        self.writer_task: asyncio.Task[None] | None = None

    def close(self) -> None:
        """Aborts the socket (no flush: the link is being dropped) and stops the writer."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.queued_bytes = 0
        self.wakeup.set()
        self.writer.transport.abort()


def _tune_socket(writer: asyncio.StreamWriter) -> None:
    """Votes are small and latency-bound: disable Nagle. Keepalive detects silently dead peers."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    with contextlib.suppress(Exception):
        writer.transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)


class P2PNetwork:
    """The full mesh of Noise links between the validators of one chain."""

    def __init__(
        self,
        *,
        chain_id: str,
        seed: bytes,
        my_index: int,
        peers: list[PeerAddress],
        listen_host: str,
        listen_port: int,
        on_frame: Callable[[int, bytes], None],
        max_frame_bytes: int = 16 * 1024 * 1024,
        max_queue_frames: int = 10_000,
        backoff_initial_s: float = 0.05,
        backoff_max_s: float = 2.0,
        handshake_timeout_s: float = 5.0,
    ) -> None:
        if not 0 < max_frame_bytes <= MAX_FRAME_CEILING:
            raise ValueError(f"max_frame_bytes must be in 1..{MAX_FRAME_CEILING}")
        if max_queue_frames < 1:
            raise ValueError("max_queue_frames must be positive")
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")
        self.chain_id = chain_id
        self.my_index = my_index
        self.listen_host = listen_host
        self.listen_port = listen_port
        self._on_frame = on_frame
        self._max_frame = max_frame_bytes
        self._max_queue = max_queue_frames
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s
        self._handshake_timeout = handshake_timeout_s
        self._static_private = x25519_private_from_seed(seed)
        self._prologue = prologue(chain_id)

        self._peers: dict[int, PeerAddress] = {}
        self._expected: dict[int, bytes] = {}
        self._index_by_key: dict[bytes, int] = {}
        for peer in peers:
            if peer.index in self._peers:
                raise ValueError(f"duplicate peer index {peer.index}")
            key = x25519_public_from_ed25519(peer.pubkey)
            if key in self._index_by_key:
                raise ValueError(
                    f"peer {peer.index} has the same Noise key as peer {self._index_by_key[key]}"
                )
            self._peers[peer.index] = peer
            self._expected[peer.index] = key
            self._index_by_key[key] = peer.index
        mine = self._expected.get(my_index)
        if mine is not None and mine != x25519_public_from_ed25519(bytes(SigningKey(seed).verify_key)):
            raise ValueError("seed does not match this node's public key in the peer list")

        self.dropped: collections.Counter[str] = collections.Counter()
        self.stats = P2PStats()
        self._links: dict[int, _Link] = {}
        self._ever_connected: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._stopping = False
        self._pending_inbound = 0
        self._rng = random.Random()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Binds the listener, then starts one dial loop per higher-indexed peer."""
        self._stopping = False
        self._server = await asyncio.start_server(
            self._on_inbound, self.listen_host, self.listen_port, limit=_STREAM_LIMIT
        )
        if self.listen_port == 0 and self._server.sockets:
            self.listen_port = int(self._server.sockets[0].getsockname()[1])
        for index, peer in sorted(self._peers.items()):
            if index > self.my_index:
                self._spawn(self._dial_loop(peer))

    async def stop(self) -> None:
        """Closes the listener and every link, and waits for all tasks so nothing leaks."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        writers = [link.writer for link in self._links.values()]
        for link in list(self._links.values()):
            link.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        # Let aborted transports run connection_lost so their sockets are closed now.
        for writer in writers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        self._links.clear()
        await asyncio.sleep(0)  # connection_lost of sockets aborted by cancelled handshakes

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ public API

    def send(self, peer: int, frame: bytes) -> bool:
        """Queues `frame` for `peer` without blocking; False if not connected, too big or queue full."""
        if len(frame) > self._max_frame:
            self.dropped["oversized_frame"] += 1
            return False
        link = self._links.get(peer)
        if link is None or link.closed:
            self.dropped["not_connected"] += 1
            return False
        if len(link.queue) >= self._max_queue:
            self.dropped["queue_full"] += 1
            return False
        link.queue.append(frame)
        link.queued_bytes += len(frame)
        link.wakeup.set()
        return True

    def broadcast(self, frame: bytes) -> None:
        """Queues `frame` for every connected peer (never ourselves)."""
        for peer in list(self._links):
            if peer != self.my_index:
                self.send(peer, frame)

    def connected(self) -> set[int]:
        return {peer for peer, link in self._links.items() if not link.closed}

    def queued_bytes(self, peer: int) -> int:
        """Bytes waiting in `peer`'s send queue (0 if not connected), so bulk senders can pace
        themselves instead of filling the queue (blob transfer)."""
        link = self._links.get(peer)
        return 0 if link is None or link.closed else link.queued_bytes

    # ------------------------------------------------------------------ connection setup

    async def _dial_loop(self, peer: PeerAddress) -> None:
        """Keeps one outbound link to `peer` alive forever (we have the lower index)."""
        backoff = self._backoff_initial
        expected = self._expected[peer.index]
        while not self._stopping:
            writer: asyncio.StreamWriter | None = None
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    reader, writer = await asyncio.open_connection(peer.host, peer.port, limit=_STREAM_LIMIT)
                _tune_socket(writer)
                session = await self._secure(reader, writer, initiator=True, expected=expected)
                if session is not None:
                    backoff = self._backoff_initial
                    await self._run_link(peer.index, reader, writer, session[0])
            except (OSError, TimeoutError) as exc:
                self.stats.dial_failures += 1
                log.debug("p2p: dial to %d (%s:%d) failed: %r", peer.index, peer.host, peer.port, exc)
            except Exception:
                log.exception("p2p: unexpected error on link to %d", peer.index)
            finally:
                if writer is not None:
                    writer.transport.abort()
            if self._stopping:
                break
            delay = min(self._backoff_max, backoff * self._rng.uniform(0.5, 1.5))
            await asyncio.sleep(delay)
            backoff = min(self._backoff_max, backoff * 2)

    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hands the connection to a task we own, so stop() can cancel it.

        (Cancelling the task asyncio.start_server creates makes Python 3.11 log a spurious error.)
        """
        if self._stopping:
            writer.transport.abort()
            return
        if self._pending_inbound >= _MAX_PENDING_HANDSHAKES:
            self.dropped["too_many_pending_handshakes"] += 1
            writer.transport.abort()
            return
        self._spawn(self._serve_inbound(reader, writer))

    async def _serve_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accepts a link from a lower-indexed validator; anything else is rejected and counted."""
        try:
            _tune_socket(writer)
            self._pending_inbound += 1
            try:
                session = await self._secure(reader, writer, initiator=False, expected=None)
            finally:
                self._pending_inbound -= 1
            if session is None:
                return
            noise, remote_key = session
            await self._run_link(self._index_by_key[remote_key], reader, writer, noise)
        except Exception:
            log.exception("p2p: unexpected error on inbound link")
        finally:
            writer.transport.abort()

    def _accept_inbound_key(self, key: bytes) -> bool:
        index = self._index_by_key.get(key)
        # Only lower indices dial us; a higher one dialing would create a second link.
        return index is not None and index < self.my_index

    async def _secure(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        initiator: bool,
        expected: bytes | None,
    ) -> tuple[Any, bytes] | None:
        """Runs the Noise handshake under a timeout; returns (session, remote key) or None (counted)."""

        def accept(key: bytes) -> bool:
            return key == expected if expected is not None else self._accept_inbound_key(key)

        peer = writer.get_extra_info("peername")
        try:
            async with asyncio.timeout(self._handshake_timeout):
                session = await handshake(
                    reader,
                    writer,
                    static_private=self._static_private,
                    prologue_bytes=self._prologue,
                    initiator=initiator,
                    accept_remote=accept,
                )
        except (HandshakeError, TimeoutError, OSError) as exc:
            self.stats.handshake_failures += 1
            log.info("p2p: handshake with %s failed: %r", peer, exc)
            return None
        self.stats.handshakes += 1
        return session

    # ------------------------------------------------------------------ established links

    async def _run_link(
        self, peer: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, noise: Any
    ) -> None:
        """Registers the link, runs its reader here and its writer in a task, then cleans up."""
        link = _Link(peer, writer, NoiseTransport(noise, self._max_frame))
        old = self._links.get(peer)
        if old is not None:
            self.stats.connections_replaced += 1
            old.close()
        if peer in self._ever_connected:
            self.stats.reconnects += 1
        self._ever_connected.add(peer)
        self._links[peer] = link
        log.info("p2p: node %d linked to validator %d", self.my_index, peer)
        link.writer_task = asyncio.create_task(self._write_loop(link))
        try:
            await self._read_loop(link, reader)
        finally:
            link.close()
            link.writer_task.cancel()
            # asyncio.wait never raises the task's CancelledError, so ours cannot be swallowed.
            await asyncio.wait([link.writer_task])
            if self._links.get(peer) is link:
                del self._links[peer]
            log.info("p2p: node %d lost link to validator %d", self.my_index, peer)

    async def _read_loop(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Decrypts messages and delivers frames in order until the link fails."""
        while not link.closed:
            try:
                message = await read_message(reader)
            except (asyncio.IncompleteReadError, OSError):
                return
            self.stats.bytes_received += len(message) + 2
            try:
                frames, oversized = link.transport.open(message)
            except MalformedFrame as exc:
                self.dropped["malformed_frame"] += 1
                log.warning("p2p: closing link to %d: %s", link.peer, exc)
                return
            if oversized:
                self.dropped["oversized_frame"] += oversized
                log.warning("p2p: dropped %d oversized frame(s) from %d", oversized, link.peer)
            for frame in frames:
                self.stats.frames_received += 1
                try:
                    self._on_frame(link.peer, frame)
                except Exception:
                    self.dropped["handler_error"] += 1
                    log.exception("p2p: on_frame handler failed for a frame from %d", link.peer)

    async def _write_loop(self, link: _Link) -> None:
        """Drains the link's queue, sealing as many frames as fit one batch per drain()."""
        queue = link.queue
        writer = link.writer
        try:
            while not link.closed:
                if not queue:
                    link.wakeup.clear()
                    await link.wakeup.wait()
                    continue
                batch: list[bytes] = []
                size = 0
                while queue and size < _WRITE_BATCH_BYTES:
                    frame = queue.popleft()
                    link.queued_bytes -= len(frame)
                    batch.append(frame)
                    size += len(frame)
                parts = link.transport.seal(batch)
                writer.writelines(parts)
                self.stats.frames_sent += len(batch)
                self.stats.bytes_sent += sum(len(p) for p in parts)
                await writer.drain()
        except (OSError, RuntimeError) as exc:
            log.debug("p2p: write to %d failed: %r", link.peer, exc)
        except Exception:
            log.exception("p2p: unexpected error writing to %d", link.peer)
        finally:
            link.close()
