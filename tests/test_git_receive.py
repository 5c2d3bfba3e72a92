"""`ReceivePack` on its own: any byte stream in, git's answer out, whatever decides the refs.

A push request built by the real `git pack-objects` is read from a plain in-memory
stream (no HTTP), its pack quarantined in a real `GitStore`; the decider stands for the
ledger's answer arriving late (side-band keepalives keep the client waiting) or failing
(the client gets a clear reason, never a hang).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from dulwich.protocol import pkt_line

from adapters.git import GitStore, ReceivedPack
from adapters.git.protocol import RefUpdate
from adapters.git.receive import MalformedPush, PushResult, ReceivePack

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def _request(tmp: Path) -> tuple[bytes, str]:
    work = tmp / "w"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True, env=ENV)
    (work / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=ENV)
    subprocess.run(["git", "commit", "-qm", "a"], cwd=work, check=True, env=ENV)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=work, capture_output=True, text=True, check=True
    ).stdout.strip()
    pack = subprocess.run(
        ["git", "pack-objects", "--revs", "--stdout"],
        cwd=work,
        input=b"main\n",
        capture_output=True,
        check=True,
    ).stdout
    caps = "report-status side-band-64k"
    body = pkt_line(f"{'0' * 40} {sha} refs/heads/main\0{caps}\n".encode()) + b"0000" + pack
    return body, sha


async def _answer(handler: ReceivePack, body: bytes) -> bytes:
    unpacked = await asyncio.to_thread(handler.unpack, io.BytesIO(body))
    return b"".join([chunk async for chunk in handler.respond(unpacked)])


def test_keepalives_while_the_decision_is_pending_then_the_report(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "git")
    body, sha = _request(tmp_path)
    seen: list[tuple[tuple[RefUpdate, ...], ReceivedPack | None, bool]] = []

    async def late(updates: Sequence[RefUpdate], pack: ReceivedPack | None, atomic: bool) -> PushResult:
        seen.append((tuple(updates), pack, atomic))
        await asyncio.sleep(0.3)
        return PushResult((("refs/heads/main", None),), position=42)

    handler = ReceivePack(store, "r1", late, max_pack_bytes=1 << 20, keepalive_s=0.05)
    out = asyncio.run(_answer(handler, body))
    assert out.count(b"0005\x01") >= 2  # empty side-band data packets: keepalives
    assert b"decided at log position 42" in out and b"ok refs/heads/main" in out
    ((updates, pack, atomic),) = seen
    assert updates == (RefUpdate("refs/heads/main", None, sha),) and not atomic
    assert pack is not None and store.has_pack(pack.digest)  # quarantined, nothing visible yet
    assert store.refs("r1") == {}


def test_a_failing_decider_gives_every_ref_a_reason(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "git")
    body, _ = _request(tmp_path)

    async def broken(updates: Sequence[RefUpdate], pack: ReceivedPack | None, atomic: bool) -> PushResult:
        raise RuntimeError("boom")

    out = asyncio.run(_answer(ReceivePack(store, "r1", broken, max_pack_bytes=1 << 20), body))
    assert b"ng refs/heads/main internal error while processing the push" in out


def test_bad_requests_and_packs(tmp_path: Path) -> None:
    store = GitStore(tmp_path / "git")
    body, _ = _request(tmp_path)

    async def never(updates: Sequence[RefUpdate], pack: ReceivedPack | None, atomic: bool) -> PushResult:
        raise AssertionError("a refused pack is never decided")

    handler = ReceivePack(store, "r1", never, max_pack_bytes=1 << 20)
    with pytest.raises(MalformedPush):
        handler.unpack(io.BytesIO(b"zzzz"))
    truncated = asyncio.run(_answer(handler, body[:-30]))
    assert b"unpack the pack is truncated" in truncated and b"ng refs/heads/main unpacker error" in truncated
    too_big = ReceivePack(store, "r1", never, max_pack_bytes=64)
    assert b"pack exceeds the maximum size of 64 bytes" in asyncio.run(_answer(too_big, body))
    assert store.quarantined() == []
