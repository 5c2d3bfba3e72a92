"""A real node's memory under decompression bombs and large archives, with the real git client.

One single-validator node serves the module. Its resident memory (VmRSS from /proc,
sampled every 20 ms) must stay under generous bounds while it refuses a push of a
1 GiB blob of zeros (a 1 MB pack) and while it serves 12 tarballs at once of a
repository holding a 64 MiB blob; with the node's default limits, stalled clients
fill its expensive-read slots and queue and the next request gets 503. Before this
work the bomb cost every node about 1 GiB, and each tarball a copy of the blob.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api_node import ApiNode, create_user, expect, start_api_node
from tests.bombs import git_env, zero_blob_repo
from tests.devnet_util import wait_until
from tests.rss import MB, RssSampler, descendants

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

V3 = "/api/v3"
BIG_MIB = 64
#: Generous: the node idles at about 150 MB; the bomb alone used to add 1 GiB.
MAX_RSS = 600 * MB


@dataclass
class Forge:
    node: ApiNode
    token: str
    client: httpx.Client

    def push_url(self, repo: str) -> str:
        return self.node.url.replace("http://", f"http://x:{self.token}@") + f"/octo/{repo}.git"


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    node = start_api_node(tmp_path_factory.mktemp("memory-node"))
    try:
        token = create_user(node.client(node.admin_token), "octo")
        client = node.client(token)
        for name in ("bomb", "big"):
            expect(client.post(f"{V3}/user/repos", json={"name": name}), 201)
        yield Forge(node, token, client)
    finally:
        node.stop()


def push(forge: Forge, work: Path, repo: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", forge.push_url(repo), "main"],
        cwd=work,
        env=git_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_a_gigabyte_bomb_is_refused_without_the_node_inflating_it(forge: Forge, tmp_path: Path) -> None:
    work = tmp_path / "bomb"
    zero_blob_repo(work, 1024, git_env())
    with RssSampler(forge.node.proc.pid) as rss:
        pushed = push(forge, work, "bomb")
    assert pushed.returncode != 0
    assert "remote unpack failed" in pushed.stderr
    assert (
        "a blob (object 3 of 3 in the pack) is 1.00 GiB; "
        "this exceeds the maximum object size of 100 MiB" in pushed.stderr
    ), pushed.stderr
    assert rss.peak < MAX_RSS, f"node RSS peaked at {rss.peak / MB:.0f} MB"
    assert forge.client.get(f"{V3}/repos/octo/bomb/branches").json() == []


@pytest.fixture(scope="module")
def big_repo(forge: Forge, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`big` with main holding a 64 MiB blob of zeros and a small file; the commit id."""
    work = tmp_path_factory.mktemp("big")
    commit = zero_blob_repo(work, BIG_MIB, git_env(), name="big.bin")
    pushed = push(forge, work, "big")
    assert pushed.returncode == 0, pushed.stderr
    return commit


def test_twelve_tarballs_at_once_stay_in_bounded_memory(forge: Forge, big_repo: str) -> None:
    url = f"{forge.node.url}{V3}/repos/octo/big/tarball"

    def fetch(_: int) -> tuple[int, int]:
        size = 0
        with httpx.stream("GET", url, timeout=120) as r:  # anonymous: a public repository
            for piece in r.iter_bytes():
                size += len(piece)
        return r.status_code, size

    with RssSampler(forge.node.proc.pid) as rss, ThreadPoolExecutor(12) as pool:
        results = list(pool.map(fetch, range(12)))
    assert [status for status, _ in results] == [200] * 12  # 4 at a time, the rest queued
    assert rss.peak < MAX_RSS, f"node RSS peaked at {rss.peak / MB:.0f} MB"
    one = httpx.get(url, timeout=120)
    prefix = f"octo-big-{big_repo[:7]}"
    with tarfile.open(fileobj=io.BytesIO(one.content), mode="r:gz") as tar:
        assert tar.getmember(f"{prefix}/big.bin").size == BIG_MIB << 20
    assert all(size == len(one.content) for _, size in results)


class Stalled:
    """A raw GET of a large file that reads the status line, then nothing."""

    def __init__(self, forge: Forge, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", int(forge.node.url.rsplit(":", 1)[1])))
        request = (
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: token {forge.token}\r\n"
            "Accept: application/vnd.github.raw\r\n\r\n"
        )
        self.sock.sendall(request.encode())

    def status(self, timeout: float) -> int | None:
        self.sock.settimeout(timeout)
        head = b""
        try:
            while b"\r\n" not in head:
                piece = self.sock.recv(256)
                if not piece:
                    return None
                head += piece
        except TimeoutError:
            return None
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()


def test_a_saturated_node_answers_503_and_reaps_git_when_clients_leave(forge: Forge, big_repo: str) -> None:
    path = f"{V3}/repos/octo/big/contents/big.bin"
    pid = forge.node.proc.pid
    clients: list[Stalled] = []
    try:
        answer: int | None = None
        for _ in range(4 + 8 + 2):  # the default slots, the default queue, and one more
            client = Stalled(forge, path)
            clients.append(client)
            answer = client.status(timeout=0.3)  # 200: streaming; None: queued (or slow)
            if answer == 503:
                break
        assert answer == 503
        assert len(clients) == 4 + 8 + 1
        busy = httpx.get(
            f"{forge.node.url}{path}", headers={"Accept": "application/vnd.github.raw"}, timeout=10
        )
        assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
        assert "busy" in busy.json()["message"]
        assert len([p for p in descendants(pid) if _comm(p).startswith("git")]) == 4
    finally:
        for client in clients:
            client.close()
    # The queued reads get slots as the first clients go, find their clients gone too.
    assert wait_until(lambda: not [p for p in descendants(pid) if _comm(p).startswith("git")], 30)
    ok = forge.client.get(path, headers={"Accept": "application/vnd.github.raw"})
    assert ok.status_code == 200 and len(ok.content) == BIG_MIB << 20


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
