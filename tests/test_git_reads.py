"""Expensive git reads in-process: slots, the queue, 503s, the time limit, and reaping git.

A small app streams a blob with `api.git_reads.stream_git` and the real `git cat-file`,
under uvicorn on a free 127.0.0.1 port. Clients that stop reading are raw sockets with
a tiny receive buffer: the node's writes back up into git's pipe and git blocks, which
is how a slow client holds a slot. Every check waits on a condition (the slots' counters,
the test process's git children), never on a fixed sleep.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from adapters.git.archive import blob_command, git_env
from api.errors import install_error_handlers
from api.git_reads import ReadSlots, stream_git
from api.settings import GitReadConfig, NodeSettings
from tests.devnet_util import wait_until

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

BLOB_BYTES = 32 * 1024 * 1024


@dataclass
class Server:
    url: str
    port: int
    app: FastAPI
    blob: str

    @property
    def slots(self) -> ReadSlots | None:
        return getattr(self.app.state, "git_read_slots", None)


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A bare repository holding a 32 MiB blob of zeros (loose: git streams it)."""
    path = tmp_path_factory.mktemp("reads") / "r.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True, env=git_env())
    proc = subprocess.run(
        ["git", f"--git-dir={path}", "hash-object", "-w", "--stdin"],
        input=bytes(BLOB_BYTES),
        capture_output=True,
        check=True,
        env=git_env(),
    )
    return path, proc.stdout.decode().strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(bare: tuple[Path, str], request: pytest.FixtureRequest) -> Iterator[Server]:
    path, blob = bare
    app = FastAPI()
    install_error_handlers(app)
    app.state.settings = NodeSettings(reads=getattr(request, "param", GitReadConfig()))

    @app.get("/blob/{sha}")
    async def get_blob(sha: str, req: Request) -> Response:
        return await stream_git(
            req,
            lambda git: blob_command(git, str(path), sha),
            media_type="application/octet-stream",
            headers={"Content-Length": str(BLOB_BYTES)},
            unavailable="no git here",
        )

    port = _free_port()
    uv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    assert wait_until(lambda: uv.started or not thread.is_alive(), 10) and uv.started
    try:
        yield Server(f"http://127.0.0.1:{port}", port, app, blob)
    finally:
        uv.should_exit = True
        thread.join(10)


def git_children() -> list[int]:
    """This process's child processes running git (zombies included: they are not reaped)."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if fields[1] == me and comm.startswith("git"):
            found.append(int(entry))
    return found


class StalledClient:
    """A GET that reads its status line and then nothing: the server's writes back up."""

    def __init__(self, server: Server, path: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", server.port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        self.head = b""

    def status(self, timeout: float) -> int | None:
        """The response's status once its head has arrived; None if nothing came in `timeout`."""
        self.sock.settimeout(timeout)
        try:
            while b"\r\n" not in self.head:
                piece = self.sock.recv(256)
                if not piece:
                    break
                self.head += piece
        except TimeoutError:
            return None
        return int(self.head.split(b" ", 2)[1]) if self.head else None

    def drain(self) -> int:
        """Read to the end of the connection; the number of bytes received in all."""
        self.sock.settimeout(30)
        total = len(self.head)
        while piece := self.sock.recv(1 << 20):
            total += len(piece)
        return total

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("server", [GitReadConfig(concurrent=1, queued=1, queue_wait_s=60)], indirect=True)
def test_slots_queue_then_503_and_a_gone_client_frees_its_slot(server: Server) -> None:
    holder = StalledClient(server, f"/blob/{server.blob}")
    assert holder.status(10) == 200
    assert git_children()  # git is blocked writing to the stalled client
    queued = StalledClient(server, f"/blob/{server.blob}")
    assert wait_until(lambda: server.slots is not None and server.slots.waiting == 1, 10)
    busy = httpx.get(f"{server.url}/blob/{server.blob}", timeout=10)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "5"
    assert "busy" in busy.json()["message"]
    holder.close()  # the client goes away: its git is killed, its slot goes to the queued read
    assert queued.status(10) == 200
    queued.close()
    assert wait_until(lambda: server.slots is not None and server.slots.active == 0, 10)
    assert wait_until(lambda: not git_children(), 10)
    whole = httpx.get(f"{server.url}/blob/{server.blob}", timeout=30)
    assert whole.status_code == 200 and whole.content == bytes(BLOB_BYTES)


@pytest.mark.parametrize("server", [GitReadConfig(time_limit_s=1.0)], indirect=True)
def test_a_stream_past_its_time_limit_is_cut_off_and_git_reaped(server: Server) -> None:
    slow = StalledClient(server, f"/blob/{server.blob}")
    assert slow.status(10) == 200
    assert wait_until(lambda: server.slots is not None and server.slots.active == 0, 20)
    assert wait_until(lambda: not git_children(), 10)
    received = slow.drain()  # the connection was closed before the body's end
    slow.close()
    assert received < BLOB_BYTES


@pytest.mark.parametrize("server", [GitReadConfig(git_binary=None)], indirect=True)
def test_without_git_the_answer_is_503(server: Server) -> None:
    r = httpx.get(f"{server.url}/blob/{server.blob}", timeout=10)
    assert (r.status_code, r.json()["message"]) == (503, "no git here")


def test_git_failing_at_once_is_a_500_and_frees_the_slot(server: Server) -> None:
    r = httpx.get(f"{server.url}/blob/{'7' * 40}", timeout=10)
    assert r.status_code == 500 and r.json()["message"] == "git failed to read the repository"
    assert server.slots is not None and server.slots.active == 0
    assert wait_until(lambda: not git_children(), 10)
    deadline = time.monotonic() + 30
    ok = httpx.get(f"{server.url}/blob/{server.blob}", timeout=max(1.0, deadline - time.monotonic()))
    assert ok.status_code == 200 and len(ok.content) == BLOB_BYTES
