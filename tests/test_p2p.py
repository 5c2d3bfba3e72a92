"""Tests for the Noise-encrypted validator transport (adapters/p2p.py).

Each test runs its own event loop via asyncio.run and stops every node it started in a
finally block, so a failing assertion never leaks listeners into other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from nacl.bindings import crypto_scalarmult_base
from nacl.signing import SigningKey
from noise.connection import Keypair, NoiseConnection

from adapters.noise_session import (
    MAX_PLAINTEXT,
    PROTOCOL_NAME,
    FrameDecoder,
    MalformedFrame,
    NoiseTransport,
    encode_message,
    handshake,
    prologue,
    x25519_private_from_seed,
    x25519_public_from_ed25519,
)
from adapters.p2p import P2PNetwork, PeerAddress

CHAIN = "test-chain"
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def validator_seeds(n: int, salt: int = 0) -> list[bytes]:
    """Seeds ordered so that index i is the i-th key in sorted order (as in genesis)."""
    seeds = [bytes([salt, i + 1]) * 16 for i in range(n)]
    return sorted(seeds, key=lambda s: bytes(SigningKey(s).verify_key))


def pubkey(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


@dataclass
class Inbox:
    frames: list[tuple[int, bytes]] = field(default_factory=list)

    def __call__(self, peer: int, frame: bytes) -> None:
        self.frames.append((peer, frame))

    def from_peer(self, peer: int) -> list[bytes]:
        return [f for p, f in self.frames if p == peer]


@dataclass
class Cluster:
    seeds: list[bytes]
    peers: list[PeerAddress]
    nodes: dict[int, P2PNetwork] = field(default_factory=dict)
    inboxes: dict[int, Inbox] = field(default_factory=dict)

    @classmethod
    def make(cls, n: int) -> Cluster:
        seeds = validator_seeds(n)
        peers = [PeerAddress(i, HOST, free_port(), pubkey(s)) for i, s in enumerate(seeds)]
        return cls(seeds, peers)

    def node(self, i: int, **kwargs: object) -> P2PNetwork:
        inbox = Inbox()
        params: dict[str, object] = {
            "chain_id": CHAIN,
            "seed": self.seeds[i],
            "my_index": i,
            "peers": self.peers,
            "listen_host": HOST,
            "listen_port": self.peers[i].port,
            "on_frame": inbox,
            "backoff_initial_s": 0.02,
            "backoff_max_s": 0.3,
        }
        params.update(kwargs)
        net = P2PNetwork(**params)  # type: ignore[arg-type]
        self.nodes[i] = net
        self.inboxes[i] = inbox
        return net

    async def stop_all(self) -> None:
        await asyncio.gather(*(n.stop() for n in self.nodes.values()), return_exceptions=True)


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def fully_connected(cluster: Cluster, indices: list[int]) -> None:
    def ok() -> bool:
        return all(cluster.nodes[i].connected() == set(indices) - {i} for i in indices)

    await wait_until(ok, what="full mesh")


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Runs one test's scenario on a fresh loop, with a hard cap so a hang fails fast."""

    async def capped() -> None:
        await asyncio.wait_for(coro_fn(), 15)

    asyncio.run(capped())


# ---------------------------------------------------------------------------- key derivation


def test_static_key_derivation_matches_peer_expectation() -> None:
    seed = os.urandom(32)
    private = x25519_private_from_seed(seed)
    assert len(private) == 32
    assert crypto_scalarmult_base(private) == x25519_public_from_ed25519(pubkey(seed))


# ---------------------------------------------------------------------------- framing units


def _session_pair() -> tuple[NoiseTransport, NoiseTransport, int]:
    """Two in-memory ends of a completed Noise XX handshake."""
    ends = []
    for initiator, seed in ((True, b"\x01" * 32), (False, b"\x02" * 32)):
        nc = NoiseConnection.from_name(PROTOCOL_NAME)
        nc.set_keypair_from_private_bytes(Keypair.STATIC, x25519_private_from_seed(seed))
        nc.set_prologue(prologue(CHAIN))
        if initiator:
            nc.set_as_initiator()
        else:
            nc.set_as_responder()
        nc.start_handshake()
        ends.append(nc)
    a, b = ends
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    b.read_message(a.write_message())
    max_frame = 300_000
    return NoiseTransport(a, max_frame), NoiseTransport(b, max_frame), max_frame


def _open_all(rx: NoiseTransport, parts: list[bytes]) -> tuple[list[bytes], int]:
    wire = b"".join(parts)
    frames: list[bytes] = []
    oversized = 0
    off = 0
    while off < len(wire):
        n = int.from_bytes(wire[off : off + 2], "big")
        assert n <= 65535
        got, over = rx.open(wire[off + 2 : off + 2 + n])
        frames += got
        oversized += over
        off += 2 + n
    return frames, oversized


def test_seal_open_roundtrip_packs_small_and_splits_large_frames() -> None:
    tx, rx, _ = _session_pair()
    small = [bytes([i]) * i for i in range(50)] + [b""]
    big = os.urandom(3 * MAX_PLAINTEXT + 17)
    parts = tx.seal(small)
    assert len(parts) == 2  # all small frames share one Noise message
    frames, oversized = _open_all(rx, parts)
    assert frames == small and oversized == 0
    parts = tx.seal([b"x", big, b"y"])
    assert len(parts) == 2 * 4
    frames, _ = _open_all(rx, parts)
    assert frames == [b"x", big, b"y"]


def test_tampered_message_is_malformed() -> None:
    tx, rx, _ = _session_pair()
    parts = tx.seal([b"hello"])
    ct = bytearray(parts[1])
    ct[3] ^= 1
    with pytest.raises(MalformedFrame):
        rx.open(bytes(ct))
    with pytest.raises(MalformedFrame):
        rx.open(b"")


def test_decoder_handles_arbitrary_splits_and_skips_oversized() -> None:
    max_frame = 1000
    frames = [os.urandom(random.randrange(0, 1000)) for _ in range(30)]
    frames.insert(7, os.urandom(5000))  # oversized, must be skipped without buffering
    frames.insert(20, os.urandom(1001))
    stream = b"".join(len(f).to_bytes(4, "big") + f for f in frames)
    expected = [f for f in frames if len(f) <= max_frame]
    rng = random.Random(7)
    for _ in range(20):
        dec = FrameDecoder(max_frame)
        got: list[bytes] = []
        skipped = 0
        off = 0
        while off < len(stream):
            step = rng.choice([1, 3, 4, 5, 100, 2000, 7000])
            out, over = dec.feed(stream[off : off + step])
            got += out
            skipped += over
            off += step
        assert got == expected
        assert skipped == 2


# ---------------------------------------------------------------------------- networking


def test_mesh_broadcast_unicast_and_large_frame_in_order() -> None:
    async def main() -> None:
        cluster = Cluster.make(4)
        try:
            for i in range(4):
                await cluster.node(i).start()
            await fully_connected(cluster, [0, 1, 2, 3])

            big = os.urandom(5 * 1024 * 1024)
            for k in range(200):
                for i in range(4):
                    cluster.nodes[i].broadcast(b"bc%d:%d" % (i, k))
            assert cluster.nodes[3].send(0, b"before-big")
            assert cluster.nodes[3].send(0, big)
            assert cluster.nodes[3].send(0, b"after-big")
            assert cluster.nodes[1].send(2, b"unicast 1->2")
            assert not cluster.nodes[1].send(1, b"to myself")

            def delivered() -> bool:
                return all(len(cluster.inboxes[i].frames) >= 600 for i in range(4)) and (
                    len(cluster.inboxes[0].from_peer(3)) == 203
                    and len(cluster.inboxes[2].from_peer(1)) == 201
                )

            await wait_until(delivered, what="all frames")
            for r in range(4):
                for s in range(4):
                    if r == s:
                        continue
                    got = [f for f in cluster.inboxes[r].from_peer(s) if f.startswith(b"bc")]
                    assert got == [b"bc%d:%d" % (s, k) for k in range(200)], (r, s)
            tail = cluster.inboxes[0].from_peer(3)[-3:]
            assert tail[0] == b"before-big" and tail[1] == big and tail[2] == b"after-big"
            assert cluster.inboxes[2].from_peer(1)[-1] == b"unicast 1->2"
            assert all(not any(p == i for p, _ in cluster.inboxes[i].frames) for i in range(4))
            for net in cluster.nodes.values():
                assert net.stats.handshake_failures == 0
                assert not net.dropped.get("malformed_frame")
        finally:
            await cluster.stop_all()

    run(main)


def test_send_when_not_connected_or_queue_full() -> None:
    async def main() -> None:
        cluster = Cluster.make(2)
        try:
            a = cluster.node(0, max_queue_frames=3)
            assert a.send(1, b"x") is False
            assert a.dropped["not_connected"] == 1
            await a.start()
            await cluster.node(1).start()
            await fully_connected(cluster, [0, 1])
            # No await between sends: the writer task cannot run, so the queue fills up.
            results = [a.send(1, b"%d" % i) for i in range(5)]
            assert results == [True, True, True, False, False]
            assert a.dropped["queue_full"] == 2
            await wait_until(lambda: len(cluster.inboxes[1].frames) == 3, what="queued frames")
            assert cluster.inboxes[1].from_peer(0) == [b"0", b"1", b"2"]
        finally:
            await cluster.stop_all()

    run(main)


def test_impostor_keys_are_rejected_both_ways() -> None:
    async def main() -> None:
        cluster = Cluster.make(2)
        impostor_seed = validator_seeds(1, salt=99)[0]
        try:
            # An impostor listens on validator 1's address with its own key.
            fake_peers = [
                cluster.peers[0],
                PeerAddress(1, HOST, cluster.peers[1].port, pubkey(impostor_seed)),
            ]
            fake_inbox = Inbox()
            fake1 = P2PNetwork(
                chain_id=CHAIN,
                seed=impostor_seed,
                my_index=1,
                peers=fake_peers,
                listen_host=HOST,
                listen_port=cluster.peers[1].port,
                on_frame=fake_inbox,
            )
            await fake1.start()
            try:
                real0 = cluster.node(0)
                await real0.start()
                await wait_until(lambda: real0.stats.handshake_failures >= 2, what="dialer rejects impostor")
                assert real0.connected() == set()
                assert real0.send(1, b"secret") is False
                assert fake1.connected() == set()
                assert fake_inbox.frames == []
            finally:
                await fake1.stop()

            # An impostor claiming index 0 dials the real validator 1.
            fake_peers = [PeerAddress(0, HOST, free_port(), pubkey(impostor_seed)), cluster.peers[1]]
            fake0 = P2PNetwork(
                chain_id=CHAIN,
                seed=impostor_seed,
                my_index=0,
                peers=fake_peers,
                listen_host=HOST,
                listen_port=fake_peers[0].port,
                on_frame=Inbox(),
                backoff_initial_s=0.02,
                backoff_max_s=0.1,
            )
            real1 = cluster.node(1)
            await real1.start()
            await fake0.start()
            try:
                await wait_until(
                    lambda: real1.stats.handshake_failures >= 2, what="listener rejects impostor"
                )
                for _ in range(20):
                    fake0.send(1, b"forged")
                    await asyncio.sleep(0.01)
                assert cluster.inboxes[1].frames == []
                # Validator 1 only ever accepts the real validator 0.
                assert real1.connected() <= {0}
            finally:
                await fake0.stop()
            # The genuine validator 0 (still dialing) gets through once the impostor is gone.
            await fully_connected(cluster, [0, 1])
            assert real0.send(1, b"genuine")
            await wait_until(lambda: cluster.inboxes[1].frames == [(0, b"genuine")], what="genuine frame")
        finally:
            await cluster.stop_all()

    run(main)


def test_different_chain_id_fails_handshake() -> None:
    async def main() -> None:
        cluster = Cluster.make(2)
        try:
            a = cluster.node(0, chain_id="chain-a")
            b = cluster.node(1, chain_id="chain-b")
            await b.start()
            await a.start()
            await wait_until(
                lambda: a.stats.handshake_failures >= 2 and b.stats.handshake_failures >= 2,
                what="handshake failures",
            )
            assert a.connected() == set() and b.connected() == set()
            assert a.stats.handshakes == 0 and b.stats.handshakes == 0
        finally:
            await cluster.stop_all()

    run(main)


def test_oversized_frame_is_dropped_and_link_survives() -> None:
    async def main() -> None:
        cluster = Cluster.make(2)
        limit = 100_000
        try:
            sender = cluster.node(0)  # default 16 MiB limit: it will send what the receiver refuses
            receiver = cluster.node(1, max_frame_bytes=limit)
            await receiver.start()
            await sender.start()
            await fully_connected(cluster, [0, 1])
            at_limit = os.urandom(limit)
            assert sender.send(1, b"first")
            assert sender.send(1, os.urandom(1024 * 1024))
            assert sender.send(1, at_limit)
            assert sender.send(1, b"last")
            await wait_until(lambda: len(cluster.inboxes[1].frames) == 3, what="frames after oversized")
            assert cluster.inboxes[1].from_peer(0) == [b"first", at_limit, b"last"]
            assert receiver.dropped["oversized_frame"] == 1
            # Locally, a frame above our own limit is refused before it is queued.
            assert receiver.send(0, os.urandom(limit + 1)) is False
            assert receiver.dropped["oversized_frame"] == 2

            # A later connection (sender restarted) works too.
            await sender.stop()
            sender2 = cluster.node(0)
            await sender2.start()
            await fully_connected(cluster, [0, 1])
            assert sender2.send(1, b"again")
            await wait_until(
                lambda: cluster.inboxes[1].from_peer(0)[3:] == [b"again"], what="frame after restart"
            )
        finally:
            await cluster.stop_all()

    run(main)


def test_garbage_input_is_counted_and_node_keeps_running() -> None:
    async def main() -> None:
        cluster = Cluster.make(2)
        try:
            node = cluster.node(1, handshake_timeout_s=0.5)
            await node.start()
            port = cluster.peers[1].port

            # 1. Random bytes, then close.
            r, w = await asyncio.open_connection(HOST, port)
            w.write(os.urandom(4096))
            await w.drain()
            w.close()
            # 2. A length prefix promising more than is ever sent: handled by the handshake timeout.
            r2, w2 = await asyncio.open_connection(HOST, port)
            w2.write(b"\xff\xff" + b"x" * 10)
            await w2.drain()
            # 3. Connect and hang up immediately.
            r3, w3 = await asyncio.open_connection(HOST, port)
            w3.close()
            await wait_until(lambda: node.stats.handshake_failures >= 3, what="garbage handshakes counted")
            w2.close()

            # 4. A valid handshake as validator 0 followed by a forged transport message.
            r4, w4 = await asyncio.open_connection(HOST, port)
            await handshake(
                r4,
                w4,
                static_private=x25519_private_from_seed(cluster.seeds[0]),
                prologue_bytes=prologue(CHAIN),
                initiator=True,
                accept_remote=lambda k: k == x25519_public_from_ed25519(cluster.peers[1].pubkey),
            )
            w4.write(encode_message(os.urandom(200)) + encode_message(os.urandom(5)))
            await w4.drain()
            await wait_until(lambda: node.dropped["malformed_frame"] == 1, what="malformed frame counted")
            with contextlib.suppress(ConnectionError):
                assert await r4.read() == b""  # the receiver closed that link
            w4.close()
            await wait_until(lambda: node.connected() == set(), what="bad link dropped")

            # The node is still healthy: the real validator 0 connects and frames flow.
            assert cluster.inboxes[1].frames == []
            real0 = cluster.node(0)
            await real0.start()
            await fully_connected(cluster, [0, 1])
            assert real0.send(1, b"ok")
            assert node.send(0, b"ok back")
            await wait_until(
                lambda: (
                    cluster.inboxes[1].frames == [(0, b"ok")]
                    and cluster.inboxes[0].frames == [(1, b"ok back")]
                ),
                what="frames after garbage",
            )
        finally:
            await cluster.stop_all()

    run(main)


def test_restarted_node_is_reconnected() -> None:
    async def main() -> None:
        cluster = Cluster.make(3)
        try:
            for i in range(3):
                await cluster.node(i).start()
            await fully_connected(cluster, [0, 1, 2])
            cluster.nodes[1].broadcast(b"before")
            await wait_until(lambda: cluster.inboxes[0].frames == [(1, b"before")], what="first frame")

            await cluster.nodes[1].stop()
            await wait_until(
                lambda: 1 not in cluster.nodes[0].connected() and 1 not in cluster.nodes[2].connected(),
                what="peers notice the stop",
            )
            old_inbox = cluster.inboxes[1]
            await cluster.node(1).start()  # same seed, same port, fresh instance
            await fully_connected(cluster, [0, 1, 2])

            for i in range(3):
                cluster.nodes[i].broadcast(b"after from %d" % i)

            def arrived() -> bool:
                return [len(cluster.inboxes[i].frames) for i in range(3)] == [3, 2, 3]

            await wait_until(arrived, what="frames after restart")
            assert sorted(cluster.inboxes[1].frames) == [(0, b"after from 0"), (2, b"after from 2")]
            assert (1, b"after from 1") in cluster.inboxes[0].frames
            assert (1, b"after from 1") in cluster.inboxes[2].frames
            assert old_inbox.frames == []
            assert cluster.nodes[0].stats.reconnects >= 1 and cluster.nodes[2].stats.reconnects >= 1
        finally:
            await cluster.stop_all()

    run(main)


async def raw_handshake(
    cluster: Cluster, as_index: int, to_index: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Completes a Noise handshake with node `to_index` using validator `as_index`'s real key."""
    reader, writer = await asyncio.open_connection(HOST, cluster.peers[to_index].port)
    await handshake(
        reader,
        writer,
        static_private=x25519_private_from_seed(cluster.seeds[as_index]),
        prologue_bytes=prologue(CHAIN),
        initiator=True,
        accept_remote=lambda k: k == x25519_public_from_ed25519(cluster.peers[to_index].pubkey),
    )
    return reader, writer


def test_only_lower_index_may_dial() -> None:
    async def main() -> None:
        cluster = Cluster.make(3)
        try:
            node0 = cluster.node(0)
            await node0.start()
            # Validator 2 is genuine but must not dial validator 0 (0 dials 2): a second link is refused.
            reader, writer = await raw_handshake(cluster, as_index=2, to_index=0)
            with contextlib.suppress(ConnectionError):
                assert await reader.read() == b""
            writer.close()
            assert node0.stats.handshake_failures == 1
            assert 2 not in node0.connected()
        finally:
            await cluster.stop_all()

    run(main)


def test_new_inbound_link_replaces_old_one() -> None:
    async def main() -> None:
        cluster = Cluster.make(2)
        try:
            node0 = cluster.node(0)
            node1 = cluster.node(1)
            await node1.start()
            await node0.start()
            await fully_connected(cluster, [0, 1])
            # A second authenticated link from validator 0 (e.g. after a restart) replaces the first.
            reader, writer = await raw_handshake(cluster, as_index=0, to_index=1)
            await wait_until(lambda: node1.stats.connections_replaced >= 1, what="replacement")
            writer.close()
            # The real node 0 sees its old link die, redials and replaces the raw one in turn.
            await wait_until(lambda: node0.stats.reconnects >= 1, what="node 0 redials")
            await fully_connected(cluster, [0, 1])

            # Node 1 may briefly still hold the closing raw link, so keep sending until one arrives.
            def delivered() -> bool:
                node1.send(0, b"still here")
                return bool(cluster.inboxes[0].frames)

            await wait_until(delivered, what="frame on the new link")
            assert set(cluster.inboxes[0].frames) == {(1, b"still here")}
        finally:
            await cluster.stop_all()

    run(main)
