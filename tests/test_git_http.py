"""Git smart HTTP on a real node process, with the real `git` client.

Repositories are created through the v3 API; their bare repositories live at
`<data>/git/repos/<repo id>.git` (the id is the API's `node_id`). Pushes go through the
ledger; clones and fetches read the bare repository the ledger keeps up to date.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dulwich.protocol import pkt_line

from adapters.keys import load_key
from api.devnet import ADMIN_LOGIN
from commands.envelope import sign_as_node
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


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Forge:
    node: ApiNode
    data: Path
    tmp: Path

    def create_repo(self, name: str, *, private: bool = False) -> dict[str, str]:
        admin = self.node.client(self.node.admin_token)
        body = expect(admin.post("/api/v3/user/repos", json={"name": name, "private": private}), 201)
        assert isinstance(body, dict)
        return body

    def bare(self, repo: dict[str, str]) -> Path:
        return self.data / "git" / "repos" / f"{repo['node_id']}.git"

    def url(self, path: str, token: str | None = None) -> str:
        creds = f"x:{token}@" if token else ""
        return self.node.url.replace("http://", f"http://{creds}") + path


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    tmp = tmp_path_factory.mktemp("git-node")
    node = start_api_node(tmp / "node")
    try:
        yield Forge(node, tmp / "node" / "data", tmp)
    finally:
        node.stop()


def populate(forge: Forge, repo: dict[str, str], work: Path, commits: int = 3) -> str:
    """Commit to a fresh work tree and push it through the node (a ledger command)."""
    git("init", "-q", "-b", "main", str(work))
    for i in range(commits):
        (work / f"file{i}.txt").write_text(f"content {i}\n" * (100 * (i + 1)))
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", cwd=work)
    git("tag", "-a", "-m", "first release", "v1.0", cwd=work)
    owner, name = repo["full_name"].split("/")
    git("push", "-q", forge.url(f"/{owner}/{name}.git", forge.node.admin_token), "main", "v1.0", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_clone_an_empty_repository(forge: Forge) -> None:
    repo = forge.create_repo("empty")
    out = git("clone", repo["clone_url"], str(forge.tmp / "empty-clone"))
    assert "empty repository" in out.stderr
    assert forge.bare(repo).is_dir()
    head = git("symbolic-ref", "HEAD", cwd=forge.bare(repo)).stdout.strip()
    assert head == "refs/heads/main"


def test_anonymous_clone_and_fetch_of_a_public_repository(forge: Forge) -> None:
    repo = forge.create_repo("public")
    git("ls-remote", repo["clone_url"])  # first access creates the bare repository
    work = forge.tmp / "public-work"
    head = populate(forge, repo, work)
    for version in ("2", "0"):
        clone = forge.tmp / f"public-clone-v{version}"
        git("-c", f"protocol.version={version}", "clone", "-q", repo["clone_url"], str(clone))
        assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
        assert git("describe", "--tags", cwd=clone).stdout.strip() == "v1.0"
        assert (clone / "file2.txt").read_text() == "content 2\n" * 300
    # The /git/ alias, a shallow clone, and an incremental fetch.
    shallow = forge.tmp / "public-shallow"
    git("clone", "-q", "--depth", "1", forge.url("/git/admin/public"), str(shallow))
    assert git("rev-list", "--count", "HEAD", cwd=shallow).stdout.strip() == "1"
    (work / "later.txt").write_text("later\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "later", cwd=work)
    git("push", "-q", f"file://{forge.bare(repo)}", "main", cwd=work)
    clone = forge.tmp / "public-clone-v2"
    git("pull", "-q", "--ff-only", cwd=clone)
    assert (clone / "later.txt").read_text() == "later\n"


def test_private_repository_needs_a_token_with_read_access(forge: Forge) -> None:
    repo = forge.create_repo("secret", private=True)
    admin = forge.node.admin_token
    git("ls-remote", forge.url("/admin/secret.git", admin))
    head = populate(forge, repo, forge.tmp / "secret-work")

    # Anonymous: a 401 challenge, so git asks for credentials (here: it may not, and fails).
    out = git("clone", repo["clone_url"], str(forge.tmp / "secret-anon"), check=False)
    assert out.returncode != 0 and "could not read Username" in out.stderr
    r = httpx.get(forge.url("/admin/secret.git/info/refs"), params={"service": "git-upload-pack"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Basic realm="Stele"'
    # Another user's token: the repository does not exist for them.
    other = create_user(forge.node.client(admin), "mallory")
    out = git("clone", forge.url("/admin/secret.git", other), str(forge.tmp / "secret-m"), check=False)
    assert out.returncode != 0 and "not found" in out.stderr
    r = httpx.get(
        forge.url("/admin/secret.git/info/refs"),
        params={"service": "git-upload-pack"},
        headers={"Authorization": f"token {other}"},
    )
    assert r.status_code == 404
    # The owner's token, as the Basic password in the URL.
    clone = forge.tmp / "secret-clone"
    git("clone", "-q", forge.url("/admin/secret.git", admin), str(clone))
    assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head


def test_pushes_go_through_the_ledger(forge: Forge) -> None:
    repo = forge.create_repo("pushme")
    admin = forge.node.admin_token
    url = forge.url("/admin/pushme.git", admin)
    head = populate(forge, repo, forge.tmp / "pushme-work")
    work = forge.tmp / "pushme-work"
    (work / "new.txt").write_text("new\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "new", cwd=work)
    new = git("rev-parse", "HEAD", cwd=work).stdout.strip()

    git("push", url, "main", "main:refs/heads/feature", cwd=work)
    refs = git("ls-remote", repo["clone_url"]).stdout
    assert f"{new}\trefs/heads/main" in refs and f"{new}\trefs/heads/feature" in refs
    assert git("cat-file", "-e", new, cwd=forge.bare(repo), check=False).returncode == 0
    # The ledger holds the same refs (the bare repository only mirrors them).
    ledger_refs = expect(forge.node.client(admin).get("/api/v3/repos/admin/pushme/git/refs/heads"), 200)
    assert {r["ref"]: r["object"]["sha"] for r in ledger_refs} == {
        "refs/heads/feature": new,
        "refs/heads/main": new,
    }
    # A deletion and a ref to an object the repository already has need no pack.
    git("push", url, ":feature", "HEAD~1:refs/heads/old", cwd=work)
    refs = git("ls-remote", repo["clone_url"]).stdout
    assert "feature" not in refs and f"{head}\trefs/heads/old" in refs
    # A stale push (the ledger's compare-and-swap) changes nothing; its objects stay invisible.
    git("reset", "-q", "--hard", head, cwd=work)
    (work / "other.txt").write_text("other\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "other", cwd=work)
    other = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    out = git("push", "--force", url, "main", cwd=work, check=False)
    assert out.returncode == 0, out.stderr  # unprotected: a forced update is allowed
    out = git("push", url, f"{new}:refs/heads/main", cwd=work, check=False)
    assert out.returncode != 0 and "rejected" in out.stderr  # the client refuses non-fast-forward
    assert f"{other}\trefs/heads/main" in git("ls-remote", repo["clone_url"]).stdout

    # Anonymous pushes are challenged; a reader without write access is refused.
    out = git("push", repo["clone_url"], "main", cwd=work, check=False)
    assert out.returncode != 0 and "could not read Username" in out.stderr
    reader = create_user(forge.node.client(admin), "reader")
    out = git("push", forge.url("/admin/pushme.git", reader), "main", cwd=work, check=False)
    assert out.returncode != 0 and "403" in out.stderr


def test_truncated_pack_gets_an_unpack_error(forge: Forge) -> None:
    repo = forge.create_repo("truncated")
    git("ls-remote", repo["clone_url"])
    work = forge.tmp / "truncated-work"
    populate(forge, repo, work)
    (work / "x.txt").write_text("x\n" * 1000)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "x", cwd=work)
    new = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    old = git("rev-parse", "HEAD~1", cwd=work).stdout.strip()
    pack = subprocess.run(
        ["git", "pack-objects", "--revs", "--stdout", "--thin"],
        cwd=work,
        env=ENV,
        input=f"{new}\n^{old}\n".encode(),
        capture_output=True,
        check=True,
    ).stdout
    body = (
        pkt_line(f"{old} {new} refs/heads/main\0report-status\n".encode()) + b"0000" + pack[: len(pack) - 30]
    )
    r = httpx.post(
        forge.url("/admin/truncated.git/git-receive-pack"),
        content=body,
        headers={
            "Content-Type": "application/x-git-receive-pack-request",
            "Authorization": f"token {forge.node.admin_token}",
        },
        timeout=30,
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-git-receive-pack-result"
    assert r.content == (
        pkt_line(b"unpack the pack is truncated\n")
        + pkt_line(b"ng refs/heads/main unpacker error\n")
        + b"0000"
    )
    assert git("rev-parse", "main", cwd=forge.bare(repo)).stdout.strip() == old


def test_a_transaction_naming_a_pack_this_node_lacks_is_refused(forge: Forge) -> None:
    """Raw pushes must come with their objects: otherwise no validator could ever decide them."""
    forge.create_repo("raw-push")
    seed = load_key(forge.data.parent / "validator.key")
    update = {"ref": "refs/heads/main", "old": "0" * 40, "new": "1" * 40, "force": False}
    tx = sign_as_node(
        chain_id="stele-api-test",
        kind="git.push_refs",
        payload={"owner": "admin", "repo": "raw-push", "pack_digest": "cd" * 32, "updates": [update]},
        actor=ADMIN_LOGIN,
        nonce=secrets.token_hex(16),
        seed=seed,
        node_index=0,
        token_id="genesis-admin",
    ).encode()
    r = httpx.post(f"{forge.node.url}/api/v1/transactions", content=tx, timeout=10)
    assert r.status_code == 422, r.text
    assert f"pack {'cd' * 32} is not held by this node" in r.json()["message"]
    r = httpx.post(f"{forge.node.url}/api/v1/transactions/batch", content=len(tx).to_bytes(4, "big") + tx)
    assert r.status_code in (202, 503) and "is not held by this node" in r.text, r.text
