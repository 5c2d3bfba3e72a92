"""Benchmark: a 1 MB `git push` with finality on four validators, beside `git http-backend`.

    .venv/bin/python bench/git_push_bench.py [--runs 15] [--size-mb 1]

Starts a 4-validator devnet on loopback, creates a user and a repository, then pushes
`--runs` commits, each adding a file of `--size-mb` MiB of random (incompressible)
bytes. Every commit is pushed twice, alternating which goes first: to a Stele node
(the push returns once the ref update is final and applied on that node, its pack
replicated to the validators), and to `git http-backend` (plain `git receive-pack`
into a bare repository, no replication) as the baseline. Reports median and p90 push
times and the ratio of the medians. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_backend import start_http_backend  # noqa: E402
from tests.devnet_util import start_devnet  # noqa: E402

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


def git(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"git {args[0]} failed: {proc.stderr.strip()}")


def timed_push(url: str, work: Path) -> float:
    t = time.perf_counter()
    # A body over http.postBuffer is sent chunked, which Python's CGI server cannot pass to
    # git http-backend; a large buffer keeps both pushes to one Content-Length request.
    git("-c", "http.postBuffer=268435456", "push", "-q", url, "main", cwd=work)
    return time.perf_counter() - t


def p90(xs: list[float]) -> float:
    return sorted(xs)[max(0, int(round(0.9 * len(xs))) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--size-mb", type=float, default=1.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stele-push-bench-") as d:
        root = Path(d)
        net = start_devnet(root / "devnet")
        cgi = None
        try:
            admin = net.admin_token()
            with httpx.Client(
                base_url=f"{net.url(0)}/api/v3", headers={"Authorization": f"token {admin}"}, timeout=30
            ) as c:
                c.post(
                    "/admin/users", json={"login": "bench", "email": "bench@example.com"}
                ).raise_for_status()
                r = c.post("/admin/users/bench/authorizations", json={"scopes": ["repo"]})
                r.raise_for_status()
                token = r.json()["token"]
            with httpx.Client(
                base_url=f"{net.url(0)}/api/v3", headers={"Authorization": f"token {token}"}, timeout=30
            ) as c:
                c.post("/user/repos", json={"name": "bench"}).raise_for_status()
            stele_url = net.url(0).replace("http://", f"http://bench:{token}@") + "/bench/bench.git"
            bare = root / "plain" / "bench.git"
            subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
            root.chmod(0o755)  # the CGI scripts may run as `nobody`
            cgi, plain_url = start_http_backend(root / "plain-srv", bare, push=True)
            work = root / "work"
            git("init", "-q", "-b", "main", str(work), cwd=root)
            (work / "README").write_text("bench\n")
            git("add", "-A", cwd=work)
            git("commit", "-q", "-m", "init", cwd=work)
            timed_push(stele_url, work)  # warm-up: connections, repository creation
            timed_push(plain_url, work)
            stele: list[float] = []
            plain: list[float] = []
            size = int(args.size_mb * 1024 * 1024)
            for i in range(args.runs):
                (work / f"blob{i}.bin").write_bytes(os.urandom(size))
                git("add", "-A", cwd=work)
                git("commit", "-q", "-m", f"blob {i}", cwd=work)
                if i % 2:
                    stele.append(timed_push(stele_url, work))
                    plain.append(timed_push(plain_url, work))
                else:
                    plain.append(timed_push(plain_url, work))
                    stele.append(timed_push(stele_url, work))
            s, p = statistics.median(stele), statistics.median(plain)
            print(
                f"{args.size_mb:g} MiB push, {args.runs} runs: Stele (4 validators, final) median "
                f"{s * 1000:.0f} ms p90 {p90(stele) * 1000:.0f} ms; git http-backend median "
                f"{p * 1000:.0f} ms p90 {p90(plain) * 1000:.0f} ms; ratio {s / p:.2f}x"
            )
        except SystemExit:
            print((root / "plain-srv" / "cgi.log").read_text()[-2000:], file=sys.stderr)
            raise
        finally:
            if cgi is not None:
                cgi.terminate()
                cgi.wait(5)
            net.stop()


if __name__ == "__main__":
    main()
