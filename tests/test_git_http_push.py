"""Git smart HTTP on a real single-validator node, with the real `git` client.

Pushes go all the way through the ledger (receive, quarantine, transaction, finality,
apply); these tests cover what the transport adds: access rules, limits, chunked and
gzip bodies, the dulwich fallback for fetches, malformed requests and side-band reports.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dulwich.protocol import pkt_line

from adapters.git import GitStore
from adapters.git.pack_view import PackView
from commands.git_view import GitView
from tests.api_node import ApiNode, create_user, expect, start_api_node

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")]

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
_names = itertools.count()


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Forge:
    node: ApiNode
    data: Path
    tokens: dict[str, str]

    def url(self, path: str, login: str | None = "alice") -> str:
        creds = f"x:{self.tokens[login]}@" if login else ""
        return self.node.url.replace("http://", f"http://{creds}") + path

    def repo_url(self, name: str, login: str | None = "alice") -> str:
        return self.url(f"/alice/{name}.git", login)

    def new_repo(self, *, private: bool = False) -> str:
        name = f"r{next(_names)}"
        alice = self.node.client(self.tokens["alice"])
        expect(alice.post("/api/v3/user/repos", json={"name": name, "private": private}), 201)
        return name

    def bare(self, name: str) -> Path:
        alice = self.node.client(self.tokens["alice"])
        repo_id = expect(alice.get(f"/api/v3/repos/alice/{name}"), 200)["node_id"]
        return self.data / "git" / "repos" / f"{repo_id}.git"

    def refs(self, name: str) -> dict[str, str]:
        out = git("ls-remote", self.repo_url(name)).stdout
        pairs = (line.split("\t") for line in out.splitlines())
        return {ref: sha for sha, ref in pairs if ref != "HEAD" and not ref.endswith("^{}")}


def _forge(tmp: Path, env: dict[str, str] | None = None) -> Iterator[Forge]:
    node = start_api_node(tmp / "node", env=env)
    try:
        admin = node.client(node.admin_token)
        tokens = {login: create_user(admin, login) for login in ("alice", "bob", "carol")}
        yield Forge(node, tmp / "node" / "data", tokens)
    finally:
        node.stop()


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    yield from _forge(tmp_path_factory.mktemp("git-push"))


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    """A node with a 64 KiB pack limit that serves fetches with dulwich (no C git)."""
    env = {"STELE_MAX_PACK_BYTES": str(64 * 1024), "STELE_GIT_BINARY": ""}
    yield from _forge(tmp_path_factory.mktemp("git-limited"), env)


def make_work(path: Path, commits: int = 2) -> Path:
    git("init", "-q", "-b", "main", str(path))
    for i in range(commits):
        (path / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
        git("add", "-A", cwd=path)
        git("commit", "-q", "-m", f"commit {i}", cwd=path)
    return path


def head(path: Path, spec: str = "HEAD") -> str:
    return git("rev-parse", spec, cwd=path).stdout.strip()


def test_push_then_clone_thin_push_tags_and_deletion(forge: Forge, tmp_path: Path) -> None:
    name = forge.new_repo()
    work = make_work(tmp_path / "w")
    out = git("push", "--progress", forge.repo_url(name), "main", cwd=work)
    assert "[new branch]" in out.stderr and "Stele: decided at log position" in out.stderr
    assert forge.refs(name) == {"refs/heads/main": head(work)}
    clone = tmp_path / "clone"
    git("clone", "-q", forge.repo_url(name, None), str(clone))  # anonymous read of a public repo
    assert head(clone) == head(work)
    # A second, thin push: only the new objects travel, the node completes the pack.
    (work / "f0.txt").write_text("file 0\nmore\n")
    git("commit", "-qam", "next", cwd=work)
    git("push", forge.repo_url(name), "main", cwd=work)
    git("pull", "-q", "--ff-only", cwd=clone)
    assert head(clone) == head(work)
    git("fsck", "--strict", cwd=forge.bare(name))
    # Tags, a new branch and a deletion.
    git("tag", "-a", "-m", "v1", "v1", cwd=work)
    git("push", forge.repo_url(name), "v1", "main:refs/heads/dev", cwd=work)
    assert set(forge.refs(name)) == {"refs/heads/main", "refs/heads/dev", "refs/tags/v1"}
    out = git("push", forge.repo_url(name), ":dev", cwd=work)
    assert "[deleted]" in out.stderr
    assert "refs/heads/dev" not in forge.refs(name)


def test_the_ledger_refusal_reaches_the_client_per_ref(forge: Forge, tmp_path: Path) -> None:
    name = forge.new_repo()
    work = make_work(tmp_path / "w")
    git("push", forge.repo_url(name), "main", "main:other", cwd=work)
    alice = forge.node.client(forge.tokens["alice"])
    protection = {
        "required_status_checks": None,
        "enforce_admins": None,
        "required_pull_request_reviews": None,
        "restrictions": None,
    }
    expect(alice.put(f"/api/v3/repos/alice/{name}/branches/main/protection", json=protection), 200)
    before = forge.refs(name)
    git("commit", "-q", "--amend", "-m", "rewritten", cwd=work)
    # A plain push: each ref on its own.
    out = git("push", "--force", forge.repo_url(name), "main", "main:other", cwd=work, check=False)
    assert "[remote rejected] main -> main (protected branch: force push not allowed)" in out.stderr
    assert "+ " in out.stderr and "main -> other (forced update)" in out.stderr
    assert forge.refs(name) == {**before, "refs/heads/other": head(work)}
    # --atomic: all or nothing.
    git("commit", "-q", "--amend", "-m", "again", cwd=work)
    out = git(
        "push", "--atomic", "--force", forge.repo_url(name), "main", "main:other", cwd=work, check=False
    )
    assert "[remote rejected] main -> main (protected branch: force push not allowed)" in out.stderr
    assert "[remote rejected] main -> other (atomic push failed)" in out.stderr


def test_access_rules(forge: Forge, tmp_path: Path) -> None:
    name = forge.new_repo(private=True)
    alice = forge.node.client(forge.tokens["alice"])
    expect(alice.put(f"/api/v3/repos/alice/{name}/collaborators/carol", json={"permission": "pull"}), 201)
    public = forge.new_repo()
    work = make_work(tmp_path / "w")
    git("push", forge.repo_url(name), "main", cwd=work)
    # Private: anonymous gets a 401 challenge (git then has nothing to send), others 404.
    out = git("clone", forge.repo_url(name, None), str(tmp_path / "anon"), check=False)
    assert out.returncode != 0 and "could not read Username" in out.stderr
    out = git("clone", forge.repo_url(name, "bob"), str(tmp_path / "bob"), check=False)
    assert out.returncode != 0 and "not found" in out.stderr
    git("clone", "-q", forge.repo_url(name, "carol"), str(tmp_path / "carol"))  # read collaborator
    assert head(tmp_path / "carol") == head(work)
    out = git("push", forge.repo_url(name, "carol"), "main:other", cwd=work, check=False)
    assert out.returncode != 0 and "403" in out.stderr
    out = git("push", forge.repo_url(public, None), "main", cwd=work, check=False)
    assert out.returncode != 0 and "could not read Username" in out.stderr  # push needs auth

    with httpx.Client(base_url=forge.node.url) as http:
        r = http.get(f"/alice/{name}.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="Stele"'
        r = http.get("/alice/nope.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 401  # an unknown repository looks like a private one
        auth = {"Authorization": f"token {forge.tokens['bob']}"}
        for path in (f"/alice/{name}.git", "/alice/nope.git", f"/git/alice/{name}"):
            r = http.get(f"{path}/info/refs", params={"service": "git-upload-pack"}, headers=auth)
            assert r.status_code == 404, path
        r = http.get(f"/alice/{public}.git/info/refs", params={"service": "git-receive-pack"}, headers=auth)
        assert r.status_code == 403 and "denied to bob" in r.text
        r = http.get(f"/alice/{public}.git/info/refs", params={"service": "git-upload-pack"}, headers=auth)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        assert r.content.startswith(b"001e# service=git-upload-pack\n0000")
        r = http.get(
            f"/alice/{public}.git/info/refs",
            params={"service": "git-upload-pack"},
            headers={"Authorization": "token stl_wrong"},
        )
        assert r.status_code == 401
        assert http.get(f"/alice/{public}.git/info/refs").status_code == 403  # dumb HTTP
        r = http.post(f"/alice/{public}.git/git-upload-pack", content=b"0000")  # no content type
        assert r.status_code == 415


def test_the_receive_advertisement_is_the_ledgers(forge: Forge, tmp_path: Path) -> None:
    """Refs are advertised from the ledger's state (what compare-and-swap is checked against)."""
    name = forge.new_repo()
    work = make_work(tmp_path / "w")
    git("push", forge.repo_url(name), "main", cwd=work)
    (forge.bare(name) / "packed-refs").unlink()  # this node's copy loses its refs
    r = httpx.get(forge.repo_url(name) + "/info/refs", params={"service": "git-receive-pack"})
    assert r.status_code == 200 and f"{head(work)} refs/heads/main".encode() in r.content


def test_pack_over_the_limit_gets_a_clear_error(limited: Forge, tmp_path: Path) -> None:
    name = limited.new_repo()
    work = make_work(tmp_path / "w")
    (work / "big.bin").write_bytes(os.urandom(200 * 1024))
    git("add", "-A", cwd=work)
    git("commit", "-qm", "big", cwd=work)
    out = git("push", limited.repo_url(name), "main", cwd=work, check=False)
    assert out.returncode != 0
    assert "pack exceeds the maximum size of 64 KiB" in out.stderr
    assert limited.refs(name) == {}
    assert list((limited.data / "git" / "tmp").iterdir()) == []


def test_dulwich_serves_fetches_without_git(limited: Forge, tmp_path: Path) -> None:
    name = limited.new_repo()
    work = make_work(tmp_path / "w", commits=3)
    git("push", limited.repo_url(name), "main", cwd=work)
    clone = tmp_path / "clone"
    git("clone", "-q", limited.repo_url(name, None), str(clone))
    assert head(clone) == head(work)
    git("clone", "-q", limited.repo_url(limited.new_repo()), str(tmp_path / "empty"))  # an empty one


def test_large_chunked_push_and_fetch(forge: Forge, tmp_path: Path) -> None:
    """Over git's 1 MiB post buffer, the push body arrives chunked (the server de-chunks it)."""
    name = forge.new_repo()
    work = make_work(tmp_path / "w")
    (work / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    git("add", "-A", cwd=work)
    git("commit", "-qm", "big", cwd=work)
    git("push", forge.repo_url(name), "main", cwd=work)
    assert forge.refs(name) == {"refs/heads/main": head(work)}
    clone = tmp_path / "clone"
    git("clone", "-q", forge.repo_url(name), str(clone))
    assert (clone / "big.bin").read_bytes() == (work / "big.bin").read_bytes()


def test_gzip_request_body(forge: Forge, tmp_path: Path) -> None:
    name = forge.new_repo()
    work = make_work(tmp_path / "w")
    git("push", forge.repo_url(name), "main", cwd=work)
    want = pkt_line(f"want {head(work)} ofs-delta\n".encode()) + b"0000" + pkt_line(b"done\n")
    headers = {"Content-Type": "application/x-git-upload-pack-request"}
    path = f"/alice/{name}.git/git-upload-pack"
    with httpx.Client(base_url=forge.node.url, timeout=30) as http:
        plain = http.post(path, content=want, headers=headers)
        zipped = http.post(path, content=gzip.compress(want), headers={**headers, "Content-Encoding": "gzip"})
        broken = http.post(
            path, content=gzip.compress(want)[:-6], headers={**headers, "Content-Encoding": "gzip"}
        )
    assert plain.status_code == 200 and plain.content.startswith(b"0008NAK\n")
    assert b"PACK" in plain.content
    assert zipped.status_code == 200 and zipped.content == plain.content
    assert broken.status_code == 400


def test_malformed_receive_pack_requests(forge: Forge) -> None:
    name = forge.new_repo()
    headers = {
        "Content-Type": "application/x-git-receive-pack-request",
        "Authorization": f"token {forge.tokens['alice']}",
    }
    sha = "1" * 40
    path = f"/alice/{name}.git/git-receive-pack"
    with httpx.Client(base_url=forge.node.url, timeout=30) as http:
        r = http.post(path, content=b"0000", headers=headers)
        assert r.status_code == 200 and r.content == b""  # git's auth probe
        r = http.post(path, content=b"zzzz", headers=headers)
        assert r.status_code == 400
        cmd = pkt_line(f"{'0' * 40} {sha} refs/heads/x\0report-status\n".encode()) + b"0000"
        r = http.post(path, content=cmd, headers=headers)
        # No pack, and the object is nowhere: the ledger refuses that ref.
        assert r.status_code == 200
        refused = pkt_line(b"ng refs/heads/x missing objects\n")
        assert r.content == pkt_line(b"unpack ok\n") + refused + b"0000"


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


def test_side_band_report(forge: Forge, tmp_path: Path) -> None:
    name = forge.new_repo()
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
        "Authorization": "Basic " + base64.b64encode(f"u:{forge.tokens['alice']}".encode()).decode(),
    }
    with httpx.Client(base_url=forge.node.url, timeout=30) as http:
        r = http.post(f"/alice/{name}.git/git-receive-pack", content=body, headers=headers)
    assert r.status_code == 200
    frames = _report_lines(r.content)
    progress = [f[1:] for f in frames if f.startswith("\x02")]
    data = "".join(f[1:] for f in frames if f.startswith("\x01"))
    assert any("received" in p for p in progress) and any("decided at log position" in p for p in progress)
    assert _report_lines(data.encode()) == ["unpack ok\n", "ok refs/heads/main\n"]
    assert forge.refs(name) == {"refs/heads/main": head(work)}


def test_the_pack_view_is_a_git_view(tmp_path: Path) -> None:
    view: GitView = PackView(GitStore(tmp_path / "git"))  # checked by mypy against the protocol
    assert not view.has_commit("r", (), "0" * 40)
