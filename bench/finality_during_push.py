"""Benchmark: finality latency of small commands while a 50 MB push is in flight.

    .venv/bin/python bench/finality_during_push.py [--push-mb 50] [--rate 10] [--idle-s 10]

Starts a 4-validator devnet on loopback and sends small real commands (create a user,
attested by a validator for the admin) one at a time at about `--rate` per second,
each waiting for its receipt (`POST /api/v1/transactions?wait=true`), round-robin over
the nodes. First for `--idle-s` seconds with nothing else going on, then while the real
`git` client pushes a commit with `--push-mb` MiB of random bytes to node 0 (the pack is
received, checked, replicated to the other validators, and the push applied everywhere).
Reports p50, p99 and the maximum latency of both windows, and how long the push took.
A node whose event loop is blocked by a large push or a slow database commit shows it
here as a long tail. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.devnet_util import signed_tx, start_devnet  # noqa: E402

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "b@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "b@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "HOME": "/nonexistent",
}


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def git(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"git {args[0]} failed: {proc.stderr.strip()}")


def probe(urls: list[str], txs: list[list[bytes]], rate: float, until: threading.Event) -> list[float]:
    """Sequential commands at about `rate`/s until `until` is set; their latencies in seconds."""
    out: list[float] = []
    k = 0
    with httpx.Client(timeout=60) as c:
        while not until.is_set():
            i = k % len(urls)
            k += 1
            started = time.perf_counter()
            r = c.post(f"{urls[i]}/api/v1/transactions", params={"wait": "true"}, content=txs[i].pop())
            r.raise_for_status()
            out.append(time.perf_counter() - started)
            rest = 1 / rate - (time.perf_counter() - started)
            if rest > 0:
                until.wait(rest)
    return out


def describe(name: str, xs: list[float]) -> str:
    return (
        f"{name}: {len(xs)} commands, p50 {statistics.median(xs) * 1000:.1f} ms, "
        f"p99 {pct(xs, 99) * 1000:.1f} ms, max {max(xs) * 1000:.1f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--push-mb", type=float, default=50.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stele-finality-push-") as d:
        root = Path(d)
        net = start_devnet(root / "devnet")
        try:
            urls = [net.url(i) for i in range(4)]
            per_node = int(args.rate * (args.idle_s + 300)) // 4 + 10
            txs = [[signed_tx(net, i, f"probe-{i}-{k}") for k in range(per_node)] for i in range(4)]
            admin = net.admin_token()
            with httpx.Client(
                base_url=f"{urls[0]}/api/v3", headers={"Authorization": f"token {admin}"}, timeout=60
            ) as c:
                c.post(
                    "/admin/users", json={"login": "bench", "email": "bench@example.com"}
                ).raise_for_status()
                r = c.post("/admin/users/bench/authorizations", json={"scopes": ["repo"]})
                r.raise_for_status()
                token = r.json()["token"]
            with httpx.Client(
                base_url=f"{urls[0]}/api/v3", headers={"Authorization": f"token {token}"}, timeout=60
            ) as c:
                c.post("/user/repos", json={"name": "big"}).raise_for_status()
            work = root / "work"
            git("init", "-q", "-b", "main", str(work), cwd=root)
            (work / "README").write_text("bench\n")
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "init", cwd=work)
            url = urls[0].replace("http://", f"http://bench:{token}@") + "/bench/big.git"
            git("push", "-q", url, "main", cwd=work)
            (work / "big.bin").write_bytes(os.urandom(int(args.push_mb * 1024 * 1024)))
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "big", cwd=work)

            stop = threading.Event()
            timer = threading.Timer(args.idle_s, stop.set)
            timer.start()
            idle = probe(urls, txs, args.rate, stop)

            stop = threading.Event()
            pushed: list[float] = []

            def push() -> None:
                started = time.perf_counter()
                try:
                    git("-c", "http.postBuffer=1073741824", "push", "-q", url, "main", cwd=work)
                    pushed.append(time.perf_counter() - started)
                finally:
                    stop.set()

            pusher = threading.Thread(target=push)
            pusher.start()
            busy = probe(urls, txs, args.rate, stop)
            pusher.join()
            print(describe("idle", idle))
            print(describe(f"during a {args.push_mb:g} MiB push", busy))
            if pushed:
                print(f"the push took {pushed[0]:.2f} s to be final and applied on node 0")
        finally:
            net.stop()


if __name__ == "__main__":
    main()
