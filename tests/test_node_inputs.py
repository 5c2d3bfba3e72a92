"""A Byzantine peer holding a real validator key sends bad input to live nodes.

The nodes drop and count every bad frame in /metrics and keep finalizing.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from adapters.keys import load_key
from adapters.p2p import P2PNetwork, PeerAddress
from consensus.crypto import Signer
from consensus.genesis import Genesis
from consensus.messages import Status, VoteMsg, encode_message
from consensus.types import ZERO_HASH, Vote, VoteKind
from tests.devnet_util import height, start_devnet, wait_until

pytestmark = pytest.mark.slow


def _dropped(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics").text
    pattern = r'stele_dropped_inputs_total\{reason="(\w+)"\} ([0-9.e+]+)'
    return {m[0]: float(m[1]) for m in re.findall(pattern, text)}


async def _attack(genesis: Genesis, seed: bytes, host: str, port: int, view: int) -> set[int]:
    vset = genesis.validator_set()
    signer = Signer(seed, vset)
    peers = [PeerAddress(i, v.host, v.p2p_port, v.pubkey) for i, v in enumerate(genesis.validators)]
    net = P2PNetwork(
        chain_id=genesis.chain_id,
        seed=seed,
        my_index=signer.index,
        peers=peers,
        listen_host=host,
        listen_port=port,
        on_frame=lambda _peer, _frame: None,
    )
    await net.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(net.connected()) < vset.n - 1 and loop.time() < deadline:
            await asyncio.sleep(0.05)  # polling the links' condition, not waiting a fixed time
        linked = net.connected()
        valid = signer.vote(VoteKind.NULLIFY, view, ZERO_HASH)
        forged = Vote(VoteKind.NULLIFY, view + 1, ZERO_HASH, signer.index, b"\x07" * 64)
        other = (signer.index + 1) % vset.n
        frames = [
            b"\xff\x00garbage",  # unknown message tag
            encode_message(Status(1, 2))[:-3],  # truncated message
            encode_message(VoteMsg(forged)),  # bad signature
            encode_message(VoteMsg(valid)),
            encode_message(VoteMsg(valid)),  # duplicated vote
            # a signer index outside the validator set, then one relayed for another validator
            encode_message(VoteMsg(Vote(VoteKind.NULLIFY, view, ZERO_HASH, 200, valid.signature))),
            encode_message(VoteMsg(Vote(VoteKind.NULLIFY, view, ZERO_HASH, other, valid.signature))),
        ]
        for frame in frames:
            net.broadcast(frame)
        deadline = loop.time() + 10
        while any(net.queued_bytes(p) for p in linked) and loop.time() < deadline:
            await asyncio.sleep(0.01)  # until every frame has left for its peer
        return linked
    finally:
        await net.stop()


def test_bad_peer_input_is_dropped_counted_and_the_chain_goes_on(tmp_path: Path) -> None:
    net = start_devnet(tmp_path / "bad-input")
    try:
        victim = 3
        node = net.nodes[victim]
        seed = load_key(node.key_path)
        genesis = Genesis.load(net.genesis_path)
        net.kill(victim)
        view = int((net.status(0) or {})["view"]) + 50
        linked = asyncio.run(_attack(genesis, seed, node.host, node.p2p_port, view))
        assert len(linked) == 3
        reasons = ("malformed_message", "bad_signature", "duplicate_vote", "non_validator_vote")

        def counted() -> bool:
            return all(_dropped(net.url(i)).get(r, 0) >= 1 for i in range(3) for r in reasons)

        assert wait_until(counted, 20), {i: _dropped(net.url(i)) for i in range(3)}
        before = height(net, 0)
        assert wait_until(lambda: height(net, 0) > before + 1, 20), "chain stopped after bad input"
        net.restart(victim)
        assert wait_until(lambda: height(net, victim) >= height(net, 0) - 1, 60)
    finally:
        net.stop()
