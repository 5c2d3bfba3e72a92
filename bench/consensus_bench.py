"""Benchmark: finality latency and saturated throughput on a 4-validator devnet.

    .venv/bin/python bench/consensus_bench.py [--seconds 20] [--clients 64] [--batch 200]

Starts four real validator processes on loopback (fresh data dir), then:
1. light load: sequential `POST /api/v1/transactions?wait=true`, one at a time,
   reporting client-observed finality latency p50/p99;
2. saturation: many concurrent clients push small transactions through
   `POST /api/v1/transactions` and the batch route, and we count transactions in
   blocks finalized during the window.
Every transaction is a real command (create a user), attested by a validator for the
genesis admin, so each one is also executed by the ledger on all four nodes.
Not a test: it asserts nothing and prints figures for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.devnet_util import signed_tx, start_devnet  # noqa: E402


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


async def light_load(urls: list[str], txs: list[list[bytes]], n: int) -> list[float]:
    lat = []
    async with httpx.AsyncClient(timeout=30) as c:
        for k in range(n):
            i = k % len(urls)
            t = time.perf_counter()
            r = await c.post(f"{urls[i]}/api/v1/transactions?wait=true", content=txs[i].pop())
            r.raise_for_status()
            lat.append(time.perf_counter() - t)
    return lat


async def finalized_txs(c: httpx.AsyncClient, url: str, lo: int, hi: int) -> int:
    total = 0
    for h in range(lo + 1, hi + 1):
        r = await c.get(f"{url}/api/v1/blocks/{h}")
        total += int(r.json()["block"]["tx_count"])
    return total


async def saturate(
    urls: list[str], txs: list[list[bytes]], seconds: float, clients: int, batch: int
) -> tuple[int, float, int]:
    stop = time.monotonic() + seconds
    sent = 0

    async def client(i: int, c: httpx.AsyncClient) -> None:
        nonlocal sent
        node = i % len(urls)
        url = urls[node]
        pool = txs[node]
        while time.monotonic() < stop and pool:
            if batch > 1:
                chunk = [pool.pop() for _ in range(min(batch, len(pool)))]
                body = b"".join(len(tx).to_bytes(4, "big") + tx for tx in chunk)
                r = await c.post(f"{url}/api/v1/transactions/batch", content=body)
                if r.status_code == 202:
                    sent += len(chunk)
                else:
                    await asyncio.sleep(0.05)
            else:
                r = await c.post(f"{url}/api/v1/transactions", content=pool.pop())
                if r.status_code == 202:
                    sent += 1
                else:
                    await asyncio.sleep(0.05)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as c:
        h0 = int((await c.get(f"{urls[0]}/api/v1/status")).json()["finalized_height"])
        t0 = time.monotonic()
        await asyncio.gather(*(client(i, c) for i in range(clients)))
        # Keep counting until everything accepted is final (or progress stops for 10 s).
        done, last_h, last_change = 0, h0, time.monotonic()
        while done < sent and time.monotonic() - last_change < 10:
            await asyncio.sleep(0.5)
            h = int((await c.get(f"{urls[0]}/api/v1/status")).json()["finalized_height"])
            if h > last_h:
                done += await finalized_txs(c, urls[0], last_h, h)
                last_h, last_change = h, time.monotonic()
        elapsed = last_change - t0
    return done, elapsed, sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument(
        "--batch", type=int, default=200, help="transactions per batch request (1 = single route)"
    )
    ap.add_argument("--latency-samples", type=int, default=300)
    ap.add_argument(
        "--pool", type=int, default=12_000, help="pre-signed transactions per node for saturation"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stele-bench-") as d:
        net = start_devnet(Path(d), 4)
        try:
            urls = [net.url(i) for i in range(4)]
            per_node = args.latency_samples // 4 + 1 + args.pool
            t = time.perf_counter()
            txs = [[signed_tx(net, i, f"bench-{i}-{k}") for k in range(per_node)] for i in range(4)]
            print(f"signed {4 * per_node:,} transactions in {time.perf_counter() - t:.1f} s")
            lat = asyncio.run(light_load(urls, txs, args.latency_samples))
            print(
                f"light load, {len(lat)} sequential tx with wait=true: "
                f"p50 {pct(lat, 50) * 1000:.1f} ms  p99 {pct(lat, 99) * 1000:.1f} ms  "
                f"mean {statistics.mean(lat) * 1000:.1f} ms"
            )
            for batch in sorted({1, args.batch}):
                done, elapsed, sent = asyncio.run(saturate(urls, txs, args.seconds, args.clients, batch))
                route = "single-tx route" if batch == 1 else f"batch route ({batch}/request)"
                print(
                    f"saturation via {route}, {args.clients} clients, {elapsed:.1f} s: "
                    f"{done / elapsed:,.0f} finalized tx/s ({sent:,} accepted, {done:,} finalized)"
                )
        finally:
            net.stop()


if __name__ == "__main__":
    main()
