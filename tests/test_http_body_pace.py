"""Slow request bodies against a real node (uvicorn on 127.0.0.1), with raw sockets.

The node runs with its pace limits lowered (no byte for 3 s, or under 1 KiB/s on average
after 2 s of waiting) so the tests take seconds. Each slow client sends on a schedule
while it waits for the server's answer, and the assertions are about that answer.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.api_node import ApiNode, expect, start_api_node

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

STALL_S, GRACE_S, MIN_RATE = 3.0, 2.0, 1024
PACE = {
    "STELE_HTTP_BODY_STALL_S": str(STALL_S),
    "STELE_HTTP_BODY_GRACE_S": str(GRACE_S),
    "STELE_HTTP_BODY_MIN_RATE": str(MIN_RATE),
}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNode]:
    n = start_api_node(tmp_path_factory.mktemp("pace"), env=PACE)
    try:
        expect(n.client(n.admin_token).post("/api/v3/user/repos", json={"name": "pushed"}), 201)
        yield n
    finally:
        n.stop()


@dataclass
class Answer:
    raw: bytes
    closed: bool  # the server closed the connection
    seconds: float  # from the first byte sent to the answer
    sent: int  # body bytes sent by then

    @property
    def status(self) -> int:
        return int(self.raw.split(b" ", 2)[1])

    def json(self) -> dict[str, object]:
        value = json.loads(self.raw.split(b"\r\n\r\n", 1)[1])
        assert isinstance(value, dict)
        return value


def send_slowly(
    node: ApiNode,
    head: bytes,
    body: bytes,
    *,
    piece: int = 1,
    every: float = 1.0,
    burst: int = 0,
    timeout: float = 60.0,
) -> Answer:
    """Send `head` and the first `burst` body bytes, then `piece` bytes every `every` seconds,
    until the server answers and closes (or the body is sent and answered); return the answer."""
    url = urlsplit(node.url)
    started = time.monotonic()
    deadline = started + timeout
    sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
    try:
        sock.sendall(head + body[:burst])
        sent = burst
        raw = b""
        next_send = time.monotonic() + every
        while time.monotonic() < deadline:
            wait = max(0.0, next_send - time.monotonic()) if sent < len(body) else deadline - time.monotonic()
            readable, _, _ = select.select([sock], [], [], wait)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return Answer(raw, True, time.monotonic() - started, sent)
                raw += chunk
                if sent >= len(body) and _complete(raw):
                    return Answer(raw, False, time.monotonic() - started, sent)
                continue
            if sent < len(body):
                try:
                    sock.sendall(body[sent : sent + piece])
                except (BrokenPipeError, ConnectionResetError):
                    sent = len(body)  # the server is done with us; read what it said
                    continue
                sent += piece
                next_send += every
        raise AssertionError(f"no answer within {timeout}s (sent {sent} bytes, got {raw[:200]!r})")
    finally:
        sock.close()


def _complete(raw: bytes) -> bool:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False


def _head(node: ApiNode, method: str, path: str, length: int, *, headers: dict[str, str]) -> bytes:
    url = urlsplit(node.url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {url.hostname}:{url.port}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _json_head(node: ApiNode, path: str, length: int) -> bytes:
    auth = {"Authorization": f"token {node.admin_token}", "Content-Type": "application/json"}
    return _head(node, "POST", path, length, headers=auth)


def test_a_body_at_one_byte_per_second_gets_408_and_the_connection_closes(node: ApiNode) -> None:
    body = b'{"name": "never"}' + b" " * 200
    answer = send_slowly(node, _json_head(node, "/api/v3/user/repos", len(body)), body)
    assert answer.status == 408, answer.raw
    assert "bytes/s" in str(answer.json()["message"])
    assert answer.closed
    assert GRACE_S <= answer.seconds < GRACE_S + STALL_S + 5, answer.seconds
    assert answer.sent < len(body)


def test_a_stalled_body_gets_408(node: ApiNode) -> None:
    """A fast start does not buy an unlimited pause: no byte for STALL_S seconds ends it."""
    body = b'{"name": "stalled"}' + b" " * 100_000
    head = _json_head(node, "/api/v3/user/repos", len(body))
    answer = send_slowly(node, head, body, burst=50_000, every=3600.0)  # then nothing
    assert answer.status == 408 and answer.closed, answer.raw
    assert f"no request body data for {STALL_S:g} s" in str(answer.json()["message"])
    assert STALL_S <= answer.seconds < STALL_S + 5, answer.seconds


def test_a_slow_git_push_gets_408(node: ApiNode) -> None:
    creds = base64.b64encode(f"admin:{node.admin_token}".encode()).decode()
    headers = {
        "Authorization": f"Basic {creds}",
        "Content-Type": "application/x-git-receive-pack-request",
    }
    body = b"0" * 10_000
    answer = send_slowly(
        node, _head(node, "POST", "/admin/pushed.git/git-receive-pack", len(body), headers=headers), body
    )
    assert answer.status == 408 and answer.closed, answer.raw
    assert "bytes/s" in str(answer.json()["message"])


def test_a_slow_body_above_the_minimum_rate_is_served(node: ApiNode) -> None:
    """2 KiB/s for longer than the grace period: slow, but fast enough."""
    body = b'{"name": "patient"' + b" " * 7000 + b"}"
    head = _json_head(node, "/api/v3/user/repos", len(body))
    answer = send_slowly(node, head, body, piece=256, every=0.125)
    assert answer.seconds > GRACE_S
    assert answer.status == 201, answer.raw
    assert answer.json()["full_name"] == "admin/patient"
