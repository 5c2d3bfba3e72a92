"""Benchmark: `git clone` from a Stele node against `git http-backend`, side by side.

    .venv/bin/python bench/git_clone_bench.py [--commits 7000] [--runs 5]

Builds a bare repository of at least 20,000 objects with `git fast-import`, pushes it
with the real `git` client to a single-validator Stele node (so the node holds it as
any user's push leaves it: the pack received, checked, accepted by the ledger and
imported), and serves the source repository from `git http-backend` behind Python's
CGI server as the baseline. Clones each `--runs` times, alternating, and reports the
median clone times and their ratio. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.http_backend import start_http_backend  # noqa: E402
from tests.api_node import expect, start_api_node  # noqa: E402


def make_repo(path: Path, commits: int) -> int:
    """A bare repo with `commits` commits, each touching two files: about 3 objects per commit."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    lines = []
    for i in range(commits):
        a = f"file {i} {'x' * 64}\n".encode()
        b = f"other {i}\n".encode() * 8
        lines.append(b"commit refs/heads/main\n")
        lines.append(f"mark :{i + 1}\ncommitter Bench <b@example.com> {1_700_000_000 + i} +0000\n".encode())
        msg = f"commit {i}\n".encode()
        lines.append(b"data %d\n%s" % (len(msg), msg))
        if i:
            lines.append(f"from :{i}\n".encode())
        for name, data in ((f"dir{i % 50}/f{i}.txt", a), (f"log{i % 7}.txt", b)):
            lines.append(f"M 100644 inline {name}\n".encode())
            lines.append(b"data %d\n%s\n" % (len(data), data))
    subprocess.run(["git", "fast-import", "--quiet"], input=b"".join(lines), cwd=path, check=True)
    out = subprocess.run(["git", "count-objects", "-v"], cwd=path, capture_output=True, text=True, check=True)
    counts = dict(line.split(": ") for line in out.stdout.splitlines())
    return int(counts["count"]) + int(counts["in-pack"])


def clone_time(url: str, dest: Path, objects: int) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    t = time.perf_counter()
    subprocess.run(["git", "clone", "-q", "--bare", url, str(dest)], check=True)
    elapsed = time.perf_counter() - t
    got = subprocess.run(["git", "rev-list", "--objects", "--all"], cwd=dest, capture_output=True, text=True)
    have = len(got.stdout.splitlines())
    if have < objects:
        raise SystemExit(f"clone from {url} is incomplete: {have} of {objects} objects")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--commits", type=int, default=7000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="stele-git-bench-") as d:
        root = Path(d)
        node = start_api_node(root / "node")
        cgi = None
        try:
            expect(node.client(node.admin_token).post("/api/v3/user/repos", json={"name": "big"}), 201)
            source = root / "source.git"
            objects = make_repo(source, args.commits)
            subprocess.run(["git", "repack", "-adq"], cwd=source, check=True)
            stele_url = f"{node.url}/admin/big.git"
            push_url = stele_url.replace("http://", f"http://admin:{node.admin_token}@")
            t = time.perf_counter()
            subprocess.run(
                ["git", "-c", "http.postBuffer=1073741824", "push", "-q", push_url, "main"],
                cwd=source,
                check=True,
            )
            print(f"pushed {objects:,} objects through the ledger in {time.perf_counter() - t:.2f} s")
            # git http-backend over the source repository.
            root.chmod(0o755)  # the CGI scripts may run as `nobody`
            cgi, backend_url = start_http_backend(root / "cgi-srv", source)
            stele, plain = [], []
            for _ in range(args.runs):
                stele.append(clone_time(stele_url, root / "c1", objects))
                plain.append(clone_time(backend_url, root / "c2", objects))
            s, p = statistics.median(stele), statistics.median(plain)
            print(
                f"clone of {objects:,} objects, median of {args.runs}: Stele {s:.2f} s, "
                f"git http-backend {p:.2f} s, ratio {s / p:.2f}x"
            )
        finally:
            if cgi is not None:
                cgi.terminate()
                cgi.wait(5)
            node.stop()


if __name__ == "__main__":
    main()
