"""Helpers for tests that run real node processes on loopback."""

from __future__ import annotations

import hashlib
import random
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from adapters.keys import load_key, public_key
from api.devnet import ADMIN_LOGIN, ADMIN_TOKEN_ID, Devnet
from commands.envelope import sign_as_node


def _free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(n: int) -> int:
    """A base port such that base..base+n-1 are all free on 127.0.0.1."""
    rnd = random.Random()
    for _ in range(200):
        base = rnd.randrange(20_000, 60_000 - n)
        if all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port block found")


def start_devnet(data_dir: Path, n: int = 4) -> Devnet:
    """Start n validators on free ports and wait for the first finalized block (stopping them on failure)."""
    http = free_port_block(n)
    p2p = free_port_block(n)
    while abs(http - p2p) < n:
        p2p = free_port_block(n)
    net = Devnet.init(data_dir, n, http, p2p)
    net.start()
    try:
        net.wait_ready(60)
    except BaseException:
        net.stop()
        raise
    return net


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def height(net: Devnet, i: int) -> int:
    st = net.status(i)
    return int(st["finalized_height"]) if st else -1


def block_hash(net: Devnet, i: int, h: int) -> str:
    r = httpx.get(f"{net.url(i)}/api/v1/blocks/{h}", timeout=5)
    r.raise_for_status()
    return str(r.json()["hash"])


def assert_same_chain(net: Devnet, nodes: list[int], upto: int) -> None:
    """Every node in `nodes` holds the same block hash at every height 1..upto."""
    for h in range(1, upto + 1):
        hashes = {block_hash(net, i, h) for i in nodes}
        assert len(hashes) == 1, f"nodes disagree at height {h}: {hashes}"


def signed_tx(net: Devnet, via: int, tag: str) -> bytes:
    """A real command (create a user named after `tag`) attested by validator `via` for the admin."""
    seed = load_key(net.nodes[via].key_path)
    index = net.genesis.index_of(public_key(seed))
    assert index is not None
    login = "u" + hashlib.sha256(tag.encode()).hexdigest()[:16]
    return sign_as_node(
        chain_id=net.genesis.chain_id,
        kind="user.create",
        payload={"login": login, "email": f"{login}@example.com"},
        actor=ADMIN_LOGIN,
        nonce=secrets.token_hex(16),
        seed=seed,
        node_index=index,
        token_id=ADMIN_TOKEN_ID,
    ).encode()


def submit(
    net: Devnet, i: int, tx: bytes | str, wait: bool = True, timeout: float = 15, token: str | None = None
) -> httpx.Response:
    """Submit `tx` to node i; a str is turned into a real command attested by node i.

    The receipt is in the answer only for a caller who may see the transaction: pass `token`.
    """
    if isinstance(tx, str):
        tx = signed_tx(net, i, tx)
    params = {"wait": "true", "timeout": str(min(timeout, 60))} if wait else {}
    headers = {} if token is None else {"Authorization": f"token {token}"}
    return httpx.post(
        f"{net.url(i)}/api/v1/transactions", params=params, content=tx, headers=headers, timeout=timeout + 5
    )
