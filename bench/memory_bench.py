"""Benchmark: a node's memory against a decompression bomb, a large push and parallel tarballs.

    .venv/bin/python bench/memory_bench.py [--big-mib 100] [--parallel 12] [--zeros]

Starts a single-validator node on free loopback ports and samples its resident memory
(VmRSS from /proc/<pid>/status, every 20 ms; also the node plus its child processes,
the git processes it runs) through four phases:

1. idle, for a second;
2. `git push` of a repository holding a 1 GiB blob of zeros (a 1 MB pack): it must be
   refused with "exceeds the maximum object size";
3. `git push` of a repository holding a `--big-mib` MiB blob (random bytes, so the pack
   is that large too; `--zeros` for zeros);
4. `--parallel` simultaneous anonymous tarball downloads of that repository, each read
   to its end.

Reports each phase's peak RSS and duration. The goal is a node under 400 MB in the push
and tarball windows. Not a test: it asserts nothing but that the bomb is refused.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dulwich
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.api_node import create_user, expect, start_api_node  # noqa: E402
from tests.bombs import git_env, zero_blob_repo  # noqa: E402
from tests.rss import MB, RssSampler  # noqa: E402

V3 = "/api/v3"


def push(url: str, work: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", url, "main"], cwd=work, env=git_env(), capture_output=True, text=True, timeout=900
    )


def big_repo(work: Path, mib: int, zeros: bool) -> None:
    env = git_env()
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=env)
    with open(work / "big.bin", "wb") as f:
        for _ in range(mib):
            f.write(bytes(1 << 20) if zeros else os.urandom(1 << 20))
    (work / "README.md").write_text("a large file\n")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", "big"], cwd=work, check=True, env=env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big-mib", type=int, default=100)
    ap.add_argument("--parallel", type=int, default=12)
    ap.add_argument("--zeros", action="store_true", help="a blob of zeros instead of random bytes")
    args = ap.parse_args()
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"Python {platform.python_version()}, dulwich {'.'.join(map(str, dulwich.__version__))}, "
        f"{git_version}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"
    )
    rows: list[tuple[str, float, RssSampler, str]] = []
    with tempfile.TemporaryDirectory(prefix="stele-memory-bench-") as d:
        root = Path(d)
        node = start_api_node(root / "node")
        try:
            token = create_user(node.client(node.admin_token), "bench")
            client = node.client(token)
            for name in ("bomb", "big"):
                expect(client.post(f"{V3}/user/repos", json={"name": name}), 201)
            base = node.url.replace("http://", f"http://x:{token}@")
            pid = node.proc.pid

            with RssSampler(pid, tree=True) as rss:
                time.sleep(1.0)
            rows.append(("idle, 1 s", 1.0, rss, ""))

            zero_blob_repo(root / "bomb", 1024, git_env())
            t = time.perf_counter()
            with RssSampler(pid, tree=True) as rss:
                refused = push(f"{base}/bench/bomb.git", root / "bomb")
            elapsed = time.perf_counter() - t
            if refused.returncode == 0 or "exceeds the maximum object size" not in refused.stderr:
                raise SystemExit(f"the 1 GiB push was not refused as it should be:\n{refused.stderr}")
            message = next(line for line in refused.stderr.splitlines() if "unpack failed" in line)
            rows.append(("push 1 GiB of zeros (1 MB pack), refused", elapsed, rss, message.strip()))

            big_repo(root / "big", args.big_mib, args.zeros)
            kind = "zeros" if args.zeros else "random bytes"
            t = time.perf_counter()
            with RssSampler(pid, tree=True) as rss:
                pushed = push(f"{base}/bench/big.git", root / "big")
            elapsed = time.perf_counter() - t
            if pushed.returncode != 0:
                raise SystemExit(f"the {args.big_mib} MiB push failed:\n{pushed.stderr}")
            rows.append((f"push {args.big_mib} MiB blob of {kind}, accepted", elapsed, rss, ""))

            url = f"{node.url}{V3}/repos/bench/big/tarball"

            def fetch(_: int) -> tuple[int, int]:
                size = 0
                with httpx.stream("GET", url, timeout=600) as r:
                    for piece in r.iter_bytes():
                        size += len(piece)
                return r.status_code, size

            t = time.perf_counter()
            with RssSampler(pid, tree=True) as rss, ThreadPoolExecutor(args.parallel) as pool:
                results = list(pool.map(fetch, range(args.parallel)))
            elapsed = time.perf_counter() - t
            counts = {s: sum(1 for x, _ in results if x == s) for s, _ in results}
            largest = max(n for _, n in results)
            answers = ", ".join(f"{n} × {s}" for s, n in sorted(counts.items()))
            note = f"{answers}; {largest / MB:.1f} MB each"
            rows.append((f"{args.parallel} parallel tarballs", elapsed, rss, note))
        finally:
            node.stop()
    print()
    print("| phase | time | node peak RSS | node + git processes | samples | note |")
    print("|---|---|---|---|---|---|")
    for phase, elapsed, rss, note in rows:
        print(
            f"| {phase} | {elapsed:.1f} s | {rss.peak / MB:.0f} MB | {rss.peak_tree / MB:.0f} MB "
            f"| {rss.samples} | {note} |"
        )


if __name__ == "__main__":
    main()
