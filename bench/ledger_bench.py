"""Benchmark: ledger apply throughput (with and without consensus) and command latency.

    .venv/bin/python bench/ledger_bench.py [--blocks 40] [--per-block 100] [--commands 200]

1. Without consensus, in one process: execute blocks of `user.create` commands and
   write them to the SQLite event store and the DuckDB projections, as a node does
   when it applies finalized blocks. Reports events/s for execution alone and for
   execution plus storage.
2. With consensus: a 4-validator devnet on loopback; node-attested commands are
   submitted through the batch route and we measure how fast events are applied.
3. Command latency: sequential `POST /api/v3/admin/users` on the devnet, each answered
   only once final and applied, reporting p50/p99.
Not a test: it asserts nothing and prints figures for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from nacl.signing import SigningKey

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.event_store import EventStore  # noqa: E402
from adapters.keys import load_key  # noqa: E402
from commands.envelope import sign_as_node  # noqa: E402
from commands.ledger import BlockContext, GenesisAdmin, execute_block, genesis_state  # noqa: E402
from consensus.genesis import Genesis  # noqa: E402
from projections.projector import Projector  # noqa: E402
from tests.devnet_util import start_devnet  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def _tx(chain: str, seed: bytes, node: int, token_id: str, n: int) -> bytes:
    return sign_as_node(
        chain_id=chain,
        kind="user.create",
        payload={"login": f"u{n}", "email": f"u{n}@example.com"},
        actor="admin",
        nonce=f"{n:032x}",
        seed=seed,
        node_index=node,
        token_id=token_id,
    ).encode()


def without_consensus(blocks: int, per_block: int) -> None:
    seed = hashlib.sha256(b"bench").digest()
    pub = bytes(SigningKey(seed).verify_key)
    # user.create is site administration: the token needs the site_admin scope.
    admin = GenesisAdmin("admin", "admin@example.com", "0" * 64, "tok-admin", scopes=("site_admin",))
    g = genesis_state("bench", admin, 0, (pub,))
    txs = [
        [_tx("bench", seed, 0, "tok-admin", b * per_block + i) for i in range(per_block)]
        for b in range(blocks)
    ]
    state, app_hash = g.state, g.app_hash
    t = time.perf_counter()
    results = []
    for h, batch in enumerate(txs, start=1):
        r = execute_block(state, app_hash, BlockContext("bench", h, h, (pub,)), batch)
        r.state.merge_into_parent()
        app_hash = r.app_hash
        results.append(r)
    exec_s = time.perf_counter() - t
    events = sum(len(r.events) for r in results)
    with tempfile.TemporaryDirectory() as d:
        store = EventStore(data_dir=Path(d))
        proj = Projector(Path(d) / "readmodels.duckdb")
        t = time.perf_counter()
        for r in results:
            store.append_block(r.height, r.events, r.receipts, r.app_hash)
            proj.apply_block(r.height, r.events)
        store_s = time.perf_counter() - t
        store.close()
        proj.close()
    print(
        f"without consensus, {blocks} blocks x {per_block} user.create: "
        f"execute {events / exec_s:,.0f} events/s; execute + event store + projections "
        f"{events / (exec_s + store_s):,.0f} events/s"
    )


def with_consensus(root: Path, blocks: int, per_block: int, commands: int) -> None:
    net = start_devnet(root, 4)
    try:
        genesis = Genesis.load(net.genesis_path)
        node = net.nodes[0]
        seed = load_key(node.key_path)
        index = genesis.index_of(seed_pub(seed))
        assert index is not None
        token = net.admin_token()
        assert token
        client = httpx.Client(timeout=60)
        # A fresh admin token whose id the node-attested bench transactions name.
        r = client.post(
            f"{net.url(0)}/api/v3/admin/users/admin/authorizations",
            json={"scopes": ["site_admin"]},
            headers={"Authorization": f"token {token}"},
        )
        token_id = str(r.json()["node_id"])
        lat = []
        for k in range(commands):
            t = time.perf_counter()
            r = client.post(
                f"{net.url(k % 4)}/api/v3/admin/users",
                json={"login": f"lat{k}", "email": f"lat{k}@example.com"},
                headers={"Authorization": f"token {token}"},
            )
            lat.append(time.perf_counter() - t)
            assert r.status_code == 201, r.text
        print(
            f"command latency on 4 validators, {commands} sequential POST /api/v3/admin/users: "
            f"p50 {pct(lat, 50) * 1000:.1f} ms  p99 {pct(lat, 99) * 1000:.1f} ms  "
            f"mean {statistics.mean(lat) * 1000:.1f} ms"
        )
        ledger0 = client.get(f"{net.url(0)}/api/v1/ledger").json()
        start_events = ledger0["events_applied"]
        total = blocks * per_block
        t = time.perf_counter()
        for b in range(blocks):
            body = b"".join(
                len(tx).to_bytes(4, "big") + tx
                for tx in (
                    _tx(genesis.chain_id, seed, index, token_id, 1_000_000 + b * per_block + i)
                    for i in range(per_block)
                )
            )
            client.post(f"{net.url(0)}/api/v1/transactions/batch", content=body)
        while True:
            applied = client.get(f"{net.url(0)}/api/v1/ledger").json()["events_applied"] - start_events
            if applied >= total or time.perf_counter() - t > 120:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - t
        print(
            f"with consensus (4 validators), {applied:,} events applied on node 0: "
            f"{applied / elapsed:,.0f} events/s"
        )
    finally:
        net.stop()


def seed_pub(seed: bytes) -> bytes:
    return bytes(SigningKey(seed).verify_key)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--per-block", type=int, default=100)
    ap.add_argument("--commands", type=int, default=200)
    args = ap.parse_args()
    without_consensus(args.blocks, args.per_block)
    with tempfile.TemporaryDirectory(prefix="stele-bench-") as d:
        with_consensus(Path(d), args.blocks, args.per_block, args.commands)


if __name__ == "__main__":
    main()
