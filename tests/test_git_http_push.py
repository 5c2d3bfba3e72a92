"""Git smart HTTP in-process: the push hook seam, limits, gzip bodies, the dulwich fallback.

The router runs in a real uvicorn server on a free 127.0.0.1 port, over a `LedgerState`
folded from events (no consensus), and the real `git` client talks to it. The push
handler here plays the ledger: it checks compare-and-swap and fast-forward with the
`GitStore`, imports the quarantined pack and writes the refs.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from dulwich.protocol import pkt_line
from fastapi import FastAPI

from adapters.git import GitStore, ReceivedPack, RefUpdate
from adapters.git.pack_view import PackView
from api import git_http
from api.auth import Caller
from commands.git_view import GitView
from domain import events as ev
from domain.evolve import apply_event
from domain.records import Repo
from domain.rules import ChainRules
from domain.state import LedgerState

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")

ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "HOME": "/nonexistent",
}
TOKENS = {login: "stl_" + secrets.token_urlsafe(20) for login in ("alice", "bob", "carol")}


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def _state() -> LedgerState:
    s = LedgerState()
    events: list[ev.Event] = []
    for i, login in enumerate(TOKENS):
        user_id = f"u-{login}"
        events.append(ev.UserCreated(user_id=user_id, login=login, email=f"{login}@x.io", site_admin=False))
        token_hash = hashlib.sha256(TOKENS[login].encode()).hexdigest()
        events.append(
            ev.TokenIssued(user_id=user_id, token_id=f"t{i}", token_hash=token_hash, scopes=["repo"], note="")
        )
    for repo_id, name, private in (("r-pub", "pub", False), ("r-priv", "priv", True)):
        events.append(
            ev.RepoCreated(
                repo_id=repo_id,
                owner_id="u-alice",
                owner_type="User",
                owner_login="alice",
                name=name,
                description="",
                private=private,
                default_branch="main",
            )
        )
    events.append(ev.CollaboratorSet(repo_id="r-priv", user_id="u-carol", permission="read"))
    for e in events:
        apply_event(s, e)
    return s


@dataclass
class FakeLedger:
    state: LedgerState
    height: int = 0
    rules: ChainRules = field(default_factory=ChainRules.latest)  # token scopes bind


@dataclass
class Server:
    url: str
    app: FastAPI
    store: GitStore
    pushes: list[tuple[str, tuple[RefUpdate, ...], ReceivedPack | None]] = field(default_factory=list)

    def repo_url(self, name: str, login: str | None = "alice") -> str:
        creds = f"x:{TOKENS[login]}@" if login else ""
        return self.url.replace("http://", f"http://{creds}") + f"/alice/{name}.git"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    app = FastAPI()
    app.state.ledger = FakeLedger(_state())
    store = GitStore(tmp_path / "git")
    app.state.git = store
    app.include_router(git_http.router)
    port = _free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", app, store)
    finally:
        uv.should_exit = True
        thread.join(10)


def install_ledger_hook(server: Server) -> None:
    """A push handler that behaves like the ledger will: CAS, fast-forward, all or nothing."""
    store = server.store

    def present(repo_id: str, digest: str, ref: str, sha: str) -> bool:
        if ref.startswith("refs/tags/"):
            return store.has_object(repo_id, digest, sha)
        return store.has_commit(repo_id, digest, sha)

    async def handler(
        caller: Caller,
        repo: Repo,
        commands: Sequence[RefUpdate],
        pack: ReceivedPack | None,
        atomic: bool = False,
    ) -> list[tuple[str, str | None]]:
        server.pushes.append((caller.user.login, tuple(commands), pack))
        digest = pack.digest if pack else ""
        current = store.refs(repo.repo_id)
        reasons: dict[str, str | None] = {}
        for c in commands:
            have = current.get(c.ref)
            if have != c.old:
                reasons[c.ref] = "stale info"
            elif c.new is not None and not present(repo.repo_id, digest, c.ref, c.new):
                reasons[c.ref] = "missing objects"
            elif (
                c.new is not None
                and have is not None
                and not store.is_ancestor(repo.repo_id, digest, have, c.new)
            ):
                reasons[c.ref] = "non-fast-forward"
            elif c.ref == "refs/heads/refuse-me":
                reasons[c.ref] = "protected branch: not allowed to push"
        if any(reasons.values()):
            return [(c.ref, reasons.get(c.ref) or "atomic push failed") for c in commands]
        if pack is not None:
            store.import_pack(repo.repo_id, pack.digest)
        for c in commands:
            if c.new is None:
                current.pop(c.ref, None)
            else:
                current[c.ref] = c.new
        store.write_refs(repo.repo_id, current)
        return [(c.ref, None) for c in commands]

    server.app.state.push_handler = handler


def make_work(path: Path, commits: int = 2) -> Path:
    git("init", "-q", "-b", "main", str(path))
    for i in range(commits):
        (path / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
        git("add", "-A", cwd=path)
        git("commit", "-q", "-m", f"commit {i}", cwd=path)
    return path


def head(path: Path, spec: str = "HEAD") -> str:
    return git("rev-parse", spec, cwd=path).stdout.strip()


def test_push_through_the_hook_then_clone(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    work = make_work(tmp_path / "w")
    out = git("push", server.repo_url("pub"), "main", cwd=work)
    assert "[new branch]" in out.stderr
    login, commands, pack = server.pushes[-1]
    assert login == "alice" and commands == (RefUpdate("refs/heads/main", None, head(work)),)
    assert pack is not None and pack.object_count == 6
    assert server.store.refs("r-pub") == {"refs/heads/main": head(work)}

    clone = tmp_path / "clone"
    git("clone", "-q", server.repo_url("pub", None), str(clone))  # anonymous read of a public repo
    assert head(clone) == head(work)

    # A second, thin push: only the new objects travel, the store completes the pack.
    (work / "f0.txt").write_text("file 0\n" * 1 + "more\n")
    git("commit", "-qam", "next", cwd=work)
    git("push", server.repo_url("pub"), "main", cwd=work)
    assert server.store.refs("r-pub")["refs/heads/main"] == head(work)
    git("pull", "-q", "--ff-only", cwd=clone)
    assert head(clone) == head(work)
    git("fsck", "--strict", cwd=server.store.repo_path("r-pub"))

    # Tags, a new branch and a deletion in one push.
    git("tag", "-a", "-m", "v1", "v1", cwd=work)
    git("push", server.repo_url("pub"), "v1", "main:refs/heads/dev", cwd=work)
    assert set(server.store.refs("r-pub")) == {"refs/heads/main", "refs/heads/dev", "refs/tags/v1"}
    out = git("push", server.repo_url("pub"), ":dev", cwd=work)
    assert "[deleted]" in out.stderr
    assert server.pushes[-1][2] is None  # a deletion carries no pack
    assert "refs/heads/dev" not in server.store.refs("r-pub")


def test_the_hook_refusal_reaches_the_client(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    work = make_work(tmp_path / "w")
    git("push", server.repo_url("pub"), "main", cwd=work)
    before = server.store.refs("r-pub")
    out = git("push", server.repo_url("pub"), "main:refuse-me", cwd=work, check=False)
    assert out.returncode != 0
    assert "[remote rejected] main -> refuse-me (protected branch: not allowed to push)" in out.stderr
    git("commit", "-q", "--amend", "-m", "rewritten", cwd=work)
    # Forced, so the client sends it; the "ledger" above allows no force.
    out = git("push", "--force", server.repo_url("pub"), "main", "main:other", cwd=work, check=False)
    assert "[remote rejected] main -> main (non-fast-forward)" in out.stderr
    assert "[remote rejected] main -> other (atomic push failed)" in out.stderr
    assert server.store.refs("r-pub") == before


def test_without_a_hook_pushes_are_refused_honestly(server: Server, tmp_path: Path) -> None:
    work = make_work(tmp_path / "w")
    out = git("push", server.repo_url("pub"), "main", cwd=work, check=False)
    assert out.returncode != 0
    assert "[remote rejected] main -> main (pushes are not enabled on this node)" in out.stderr
    assert server.store.refs("r-pub") == {}
    assert server.store.quarantined() == []  # a pack nobody will reference is not kept


def test_access_rules(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    work = make_work(tmp_path / "w")
    git("push", server.repo_url("priv"), "main", cwd=work)
    # Private: anonymous gets a 401 challenge (git then has nothing to send), others 404.
    out = git("clone", server.repo_url("priv", None), str(tmp_path / "anon"), check=False)
    assert out.returncode != 0 and "could not read Username" in out.stderr
    out = git("clone", server.repo_url("priv", "bob"), str(tmp_path / "bob"), check=False)
    assert out.returncode != 0 and "not found" in out.stderr
    git("clone", "-q", server.repo_url("priv", "carol"), str(tmp_path / "carol"))  # read collaborator
    assert head(tmp_path / "carol") == head(work)
    out = git("push", server.repo_url("priv", "carol"), "main:other", cwd=work, check=False)
    assert out.returncode != 0 and "403" in out.stderr
    out = git("push", server.repo_url("pub", None), "main", cwd=work, check=False)
    assert out.returncode != 0 and "could not read Username" in out.stderr  # push needs auth

    with httpx.Client(base_url=server.url) as http:
        r = http.get("/alice/priv.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="Stele"'
        r = http.get("/alice/nope.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 401  # an unknown repository looks like a private one
        auth = {"Authorization": f"token {TOKENS['bob']}"}
        for path in ("/alice/priv.git", "/alice/nope.git", "/git/alice/priv"):
            r = http.get(f"{path}/info/refs", params={"service": "git-upload-pack"}, headers=auth)
            assert r.status_code == 404, path
        r = http.get("/alice/pub.git/info/refs", params={"service": "git-receive-pack"}, headers=auth)
        assert r.status_code == 403 and "denied to bob" in r.text
        r = http.get("/alice/pub.git/info/refs", params={"service": "git-upload-pack"}, headers=auth)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        assert r.content.startswith(b"001e# service=git-upload-pack\n0000")
        r = http.get(
            "/alice/pub.git/info/refs",
            params={"service": "git-upload-pack"},
            headers={"Authorization": "token stl_wrong"},
        )
        assert r.status_code == 401
        r = http.get("/alice/pub.git/info/refs")  # dumb HTTP
        assert r.status_code == 403
        r = http.post("/alice/pub.git/git-upload-pack", content=b"0000")  # no content type
        assert r.status_code == 415


def test_pack_over_the_limit_gets_a_clear_error(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    server.app.state.git_http = git_http.GitHttpConfig(max_pack_bytes=64 * 1024)
    work = make_work(tmp_path / "w")
    (work / "big.bin").write_bytes(os.urandom(200 * 1024))
    git("add", "-A", cwd=work)
    git("commit", "-qm", "big", cwd=work)
    out = git("push", server.repo_url("pub"), "main", cwd=work, check=False)
    assert out.returncode != 0
    assert "pack exceeds the maximum size of 64 KiB" in out.stderr
    assert server.store.refs("r-pub") == {} and server.store.quarantined() == []
    assert list(server.store.tmp_dir.iterdir()) == []


def test_large_chunked_push_and_fetch(server: Server, tmp_path: Path) -> None:
    """Over git's 1 MiB post buffer, the push body arrives chunked (the server de-chunks it)."""
    install_ledger_hook(server)
    work = make_work(tmp_path / "w")
    (work / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git("add", "-A", cwd=work)
    git("commit", "-qm", "big", cwd=work)
    started = time.monotonic()
    git("push", server.repo_url("pub"), "main", cwd=work)
    pushed = time.monotonic() - started
    assert server.store.refs("r-pub") == {"refs/heads/main": head(work)}
    clone = tmp_path / "clone"
    git("clone", "-q", server.repo_url("pub"), str(clone))
    assert (clone / "big.bin").read_bytes() == (work / "big.bin").read_bytes()
    assert pushed < 30


def test_gzip_request_body(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    work = make_work(tmp_path / "w")
    git("push", server.repo_url("pub"), "main", cwd=work)
    want = pkt_line(f"want {head(work)} ofs-delta\n".encode()) + b"0000" + pkt_line(b"done\n")
    headers = {"Content-Type": "application/x-git-upload-pack-request"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        plain = http.post("/alice/pub.git/git-upload-pack", content=want, headers=headers)
        zipped = http.post(
            "/alice/pub.git/git-upload-pack",
            content=gzip.compress(want),
            headers={**headers, "Content-Encoding": "gzip"},
        )
        broken = http.post(
            "/alice/pub.git/git-upload-pack",
            content=gzip.compress(want)[:-6],
            headers={**headers, "Content-Encoding": "gzip"},
        )
    assert plain.status_code == 200 and plain.content.startswith(b"0008NAK\n")
    assert b"PACK" in plain.content
    assert zipped.status_code == 200 and zipped.content == plain.content
    assert broken.status_code == 400


def test_dulwich_serves_fetches_without_git(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    work = make_work(tmp_path / "w", commits=3)
    git("push", server.repo_url("pub"), "main", cwd=work)
    server.app.state.git_http = git_http.GitHttpConfig(git_binary=None)
    clone = tmp_path / "clone"
    git("clone", "-q", server.repo_url("pub", None), str(clone))
    assert head(clone) == head(work)
    git("clone", "-q", server.repo_url("priv"), str(tmp_path / "empty"))  # an empty repository


def test_malformed_receive_pack_requests(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    headers = {
        "Content-Type": "application/x-git-receive-pack-request",
        "Authorization": f"token {TOKENS['alice']}",
    }
    sha = "1" * 40
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/alice/pub.git/git-receive-pack", content=b"0000", headers=headers)
        assert r.status_code == 200 and r.content == b""  # git's auth probe
        r = http.post("/alice/pub.git/git-receive-pack", content=b"zzzz", headers=headers)
        assert r.status_code == 400
        cmd = pkt_line(f"{'0' * 40} {sha} refs/heads/x\0report-status\n".encode()) + b"0000"
        r = http.post("/alice/pub.git/git-receive-pack", content=cmd, headers=headers)
        # No pack, and the object is nowhere: the ledger (here the hook) decides.
        assert r.status_code == 200
        refused = pkt_line(b"ng refs/heads/x missing objects\n")
        assert r.content == pkt_line(b"unpack ok\n") + refused + b"0000"
    assert [p[1][0].ref for p in server.pushes] == ["refs/heads/x"]


def _report_lines(body: bytes) -> list[str]:
    lines: list[str] = []
    pos = 0
    while pos < len(body):
        size = int(body[pos : pos + 4], 16)
        if size == 0:
            pos += 4
            continue
        lines.append(body[pos + 4 : pos + size].decode())
        pos += size
    return lines


def test_side_band_report(server: Server, tmp_path: Path) -> None:
    install_ledger_hook(server)
    work = make_work(tmp_path / "w")
    pack = subprocess.run(
        ["git", "pack-objects", "--revs", "--stdout"],
        cwd=work,
        env=ENV,
        input=b"main\n",
        capture_output=True,
        check=True,
    ).stdout
    body = (
        pkt_line(f"{'0' * 40} {head(work)} refs/heads/main\0report-status side-band-64k agent=x\n".encode())
        + b"0000"
        + pack
    )
    headers = {
        "Content-Type": "application/x-git-receive-pack-request",
        "Authorization": "Basic " + base64.b64encode(f"u:{TOKENS['alice']}".encode()).decode(),
    }
    with httpx.Client(base_url=server.url, timeout=30) as http:
        r = http.post("/alice/pub.git/git-receive-pack", content=body, headers=headers)
    assert r.status_code == 200
    frames = _report_lines(r.content)
    progress = [f[1:] for f in frames if f.startswith("\x02")]
    data = "".join(f[1:] for f in frames if f.startswith("\x01"))
    assert any("received" in p for p in progress)
    assert _report_lines(data.encode()) == ["unpack ok\n", "ok refs/heads/main\n"]
    assert server.store.refs("r-pub") == {"refs/heads/main": head(work)}


def test_slow_ledger_keepalive_and_failing_hook(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_ledger_hook(server)
    ledger: git_http.PushHandler = server.app.state.push_handler
    monkeypatch.setattr(git_http, "_KEEPALIVE_S", 0.05)

    async def slow(
        caller: Caller,
        repo: Repo,
        commands: Sequence[RefUpdate],
        pack: ReceivedPack | None,
        atomic: bool = False,
    ) -> list[tuple[str, str | None]]:
        await asyncio.sleep(0.5)  # waiting for finality: the client gets side-band keepalives
        return await ledger(caller, repo, commands, pack, atomic)

    server.app.state.push_handler = slow
    work = make_work(tmp_path / "w")
    git("push", server.repo_url("pub"), "main", cwd=work)
    assert server.store.refs("r-pub") == {"refs/heads/main": head(work)}

    async def broken(*args: object) -> list[tuple[str, str | None]]:
        raise RuntimeError("boom")

    server.app.state.push_handler = broken
    out = git("push", server.repo_url("pub"), "main:other", cwd=work, check=False)
    assert "[remote rejected] main -> other (internal error while processing the push)" in out.stderr


def test_the_pack_view_is_a_git_view(tmp_path: Path) -> None:
    view: GitView = PackView(GitStore(tmp_path / "git"))  # checked by mypy against the protocol
    assert not view.has_commit("r", (), "0" * 40)
