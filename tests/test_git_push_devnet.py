"""`git push` as a ledger command on four real validators, with the real `git` client.

A push lands on one node; its pack travels to the other validators by digest; the ref
update is ordered by consensus and applied on every node. Reads on another node use the
position the push reported (`remote: Stele: decided at log position P`) through
`X-Stele-Min-Position`, the documented way to read your own writes anywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.devnet import Devnet
from tests.devnet_util import start_devnet, wait_until

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

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
POSITION = re.compile(r"decided at log position (\d+)")


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=180)
    if check:
        assert proc.returncode == 0, f"git {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def head(work: Path, spec: str = "HEAD") -> str:
    return git("rev-parse", spec, cwd=work).stdout.strip()


def commit(work: Path, name: str, content: str | bytes) -> str:
    path = work / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", f"edit {name}", cwd=work)
    return head(work)


def at(position: int) -> tuple[str, str]:
    """git options to read at least log position `position` (read your own writes anywhere)."""
    return ("-c", f"http.extraHeader=X-Stele-Min-Position: {position}")


def pushed_position(proc: subprocess.CompletedProcess[str]) -> int:
    found = POSITION.findall(proc.stderr)
    assert found, f"no position in the push output:\n{proc.stderr}"
    return int(found[-1])


class Forge:
    """The devnet plus a user `alice` and her token."""

    def __init__(self, net: Devnet, token: str) -> None:
        self.net = net
        self.token = token

    def url(self, i: int, repo: str) -> str:
        base = self.net.url(i).replace("http://", f"http://alice:{self.token}@")
        return f"{base}/alice/{repo}.git"

    def api(self, i: int, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.net.url(i)}/api/v3",
            headers={"Authorization": f"token {token or self.token}"},
            timeout=60,
        )

    def create_repo(self, name: str) -> None:
        with self.api(0) as c:
            r = c.post("/user/repos", json={"name": name})
            assert r.status_code == 201, r.text

    def push(
        self, work: Path, i: int, repo: str, *refspecs: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return git("push", "--progress", "--porcelain", self.url(i, repo), *refspecs, cwd=work, check=check)

    def clone(self, i: int, repo: str, dest: Path, position: int) -> Path:
        git(
            "-c",
            f"http.extraHeader=X-Stele-Min-Position: {position}",
            "clone",
            "-q",
            self.url(i, repo),
            str(dest),
        )
        return dest

    def remote_refs(self, i: int, repo: str, position: int) -> dict[str, str]:
        out = git("-c", f"http.extraHeader=X-Stele-Min-Position: {position}", "ls-remote", self.url(i, repo))
        return {ref: sha for sha, ref in (line.split("\t") for line in out.stdout.splitlines())}


@pytest.fixture(scope="module")
def forge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forge]:
    net = start_devnet(tmp_path_factory.mktemp("git-devnet"))
    try:
        admin = net.admin_token()
        assert admin
        with httpx.Client(base_url=f"{net.url(0)}/api/v3", headers={"Authorization": f"token {admin}"}) as c:
            r = c.post("/admin/users", json={"login": "alice", "email": "alice@example.com"})
            assert r.status_code == 201, r.text
            r = c.post("/admin/users/alice/authorizations", json={"scopes": ["repo"]})
            assert r.status_code == 201, r.text
            token = r.json()["token"]
        yield Forge(net, token)
    finally:
        net.stop()


def _work(tmp_path: Path, name: str = "w") -> Path:
    work = tmp_path / name
    git("init", "-q", "-b", "main", str(work))
    commit(work, "README.md", "# hello\n")
    return work


def test_push_on_one_node_clone_and_fetch_on_every_other(forge: Forge, tmp_path: Path) -> None:
    forge.create_repo("shared")
    work = _work(tmp_path)
    commit(work, "src/app.py", "print('hi')\n")
    p1 = pushed_position(forge.push(work, 0, "shared", "main"))
    for i in (1, 2, 3):
        clone = forge.clone(i, "shared", tmp_path / f"clone{i}", p1)
        assert head(clone) == head(work)
        assert (clone / "src/app.py").read_text() == "print('hi')\n"
        git("fsck", "--strict", cwd=clone)
    # A push to another node, fetched on a third.
    other = tmp_path / "clone1"
    commit(other, "src/lib.py", "x = 1\n")
    p2 = pushed_position(forge.push(other, 1, "shared", "main"))
    assert p2 > p1
    fetcher = tmp_path / "clone2"
    git(*at(p2), "pull", "-q", "--ff-only", cwd=fetcher)
    assert head(fetcher) == head(other)
    assert {i: forge.remote_refs(i, "shared", p2)["refs/heads/main"] for i in range(4)} == {
        i: head(other) for i in range(4)
    }
    # The refs are the ledger's: the v3 API on every node reports the same branch tip.
    for i in range(4):
        with forge.api(i) as c:
            ref = c.get("/repos/alice/shared/git/ref/heads/main", headers={"X-Stele-Min-Position": str(p2)})
            assert ref.status_code == 200, ref.text
            assert ref.json()["object"]["sha"] == head(other)


def test_force_pushes_non_fast_forward_and_protected_branches(forge: Forge, tmp_path: Path) -> None:
    forge.create_repo("guarded")
    work = _work(tmp_path)
    base = head(work)
    pushed_position(forge.push(work, 2, "guarded", "main"))
    commit(work, "a.txt", "a\n")
    pushed_position(forge.push(work, 2, "guarded", "main"))
    # Rewrite history: without --force the client refuses; with it, an unprotected branch moves.
    git("reset", "-q", "--hard", base, cwd=work)
    rewritten = commit(work, "b.txt", "b\n")
    assert forge.push(work, 2, "guarded", "main", check=False).returncode != 0
    position = pushed_position(forge.push(work, 2, "guarded", "+main"))
    assert forge.remote_refs(0, "guarded", position)["refs/heads/main"] == rewritten
    # Protect main: no force pushes, no deletion.
    with forge.api(1) as c:
        r = c.put(
            "/repos/alice/guarded/branches/main/protection",
            json={
                "required_status_checks": None,
                "enforce_admins": None,
                "required_pull_request_reviews": None,
                "restrictions": None,
                "allow_force_pushes": False,
                "allow_deletions": False,
            },
        )
        assert r.status_code == 200, r.text
        protected_at = int(r.headers["X-Stele-Position"])
    git("reset", "-q", "--hard", base, cwd=work)
    commit(work, "c.txt", "c\n")
    refused = forge.push(work, 3, "guarded", "+main", check=False)
    assert refused.returncode != 0
    assert "protected branch: force push not allowed" in refused.stdout + refused.stderr
    deleted = forge.push(work, 0, "guarded", ":main", check=False)
    assert deleted.returncode != 0
    assert "refusing to delete the current branch: refs/heads/main" in deleted.stdout + deleted.stderr
    for i in range(4):
        assert forge.remote_refs(i, "guarded", protected_at)["refs/heads/main"] == rewritten
    # A fast-forward is still fine.
    git("reset", "-q", "--hard", rewritten, cwd=work)
    ahead = commit(work, "d.txt", "d\n")
    position = pushed_position(forge.push(work, 3, "guarded", "main"))
    assert forge.remote_refs(1, "guarded", position)["refs/heads/main"] == ahead


def test_concurrent_pushes_to_one_ref_on_two_nodes_exactly_one_wins(forge: Forge, tmp_path: Path) -> None:
    forge.create_repo("race")
    work = _work(tmp_path)
    position = pushed_position(forge.push(work, 0, "race", "main"))
    a = forge.clone(1, "race", tmp_path / "a", position)
    b = forge.clone(2, "race", tmp_path / "b", position)
    tips = {"a": commit(a, "a.txt", "from a\n"), "b": commit(b, "b.txt", "from b\n")}
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    start = threading.Barrier(2)

    def push(name: str, work: Path, node: int) -> None:
        start.wait()
        results[name] = forge.push(work, node, "race", "main", check=False)

    threads = [
        threading.Thread(target=push, args=("a", a, 1)),
        threading.Thread(target=push, args=("b", b, 2)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    winners = [name for name, proc in results.items() if proc.returncode == 0]
    assert len(winners) == 1, {k: (v.returncode, v.stdout, v.stderr) for k, v in results.items()}
    loser = results["b" if winners == ["a"] else "a"]
    assert re.search(r"stale info|non-fast-forward|fetch first", loser.stdout + loser.stderr), loser
    final = pushed_position(results[winners[0]])
    for i in range(4):
        assert forge.remote_refs(i, "race", final)["refs/heads/main"] == tips[winners[0]]


def test_a_push_over_10_mb(forge: Forge, tmp_path: Path) -> None:
    forge.create_repo("big")
    work = _work(tmp_path)
    blob = os.urandom(11 * 1024 * 1024)  # incompressible: the pack is over 10 MB
    commit(work, "data.bin", blob)
    position = pushed_position(forge.push(work, 3, "big", "main"))
    clone = forge.clone(1, "big", tmp_path / "clone", position)
    assert hashlib.sha256((clone / "data.bin").read_bytes()).digest() == hashlib.sha256(blob).digest()


def _ledger(forge: Forge, i: int) -> dict[str, Any]:
    r = httpx.get(f"{forge.net.url(i)}/api/v1/ledger", timeout=5)
    r.raise_for_status()
    return dict(r.json())


def test_a_validator_killed_during_a_push(forge: Forge, tmp_path: Path) -> None:
    """Three of four validators are a quorum: the push completes, and the killed one catches up
    (fetching the pack it never received from its peers) and serves the same objects."""
    forge.create_repo("crash")
    work = _work(tmp_path)
    commit(work, "payload.bin", os.urandom(6 * 1024 * 1024))
    result: list[subprocess.CompletedProcess[str]] = []
    pusher = threading.Thread(target=lambda: result.append(forge.push(work, 0, "crash", "main", check=False)))
    pusher.start()
    forge.net.kill(3)
    pusher.join(240)
    proc = result[0]
    assert proc.returncode == 0, proc.stderr
    position = pushed_position(proc)
    for i in (0, 1, 2):
        assert forge.remote_refs(i, "crash", position)["refs/heads/main"] == head(work)
    forge.net.start_node(3)
    assert wait_until(lambda: forge.net.status(3) is not None, 60)
    assert wait_until(lambda: int(_ledger(forge, 3).get("height", -1)) >= position, 120), _ledger(forge, 3)
    clone = forge.clone(3, "crash", tmp_path / "after", position)
    assert head(clone) == head(work)
    git("fsck", "--strict", cwd=clone)


def _metrics(forge: Forge, i: int) -> str:
    r = httpx.get(f"{forge.net.url(i)}/metrics", timeout=5)
    r.raise_for_status()
    return r.text


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _heights(forge: Forge) -> list[int]:
    return [int(_ledger(forge, i)["height"]) for i in range(4)]


def test_hostile_ref_names_are_refused_per_ref_and_every_node_goes_on(forge: Forge, tmp_path: Path) -> None:
    """The four pushes that once halted every validator for good (issue 8's A-D)."""
    forge.create_repo("hostile")
    work = _work(tmp_path)
    tip = head(work)
    forge.push(work, 0, "hostile", "main")
    long = "a" * 251
    # A: a component too long for a file name.
    a = forge.push(work, 1, "hostile", f"main:refs/heads/{long}", check=False)
    assert a.returncode != 0 and f"cannot lock ref 'refs/heads/{long}': a component is 251 bytes" in a.stdout
    # B: a ref below an existing one.
    forge.push(work, 2, "hostile", "main:refs/heads/df")
    b = forge.push(work, 3, "hostile", "main:refs/heads/df/sub", check=False)
    assert b.returncode != 0
    assert "'refs/heads/df' exists; cannot create 'refs/heads/df/sub'" in b.stdout
    # C: both in one push: the first goes in, the second is refused on its own.
    c = forge.push(work, 0, "hostile", "main:refs/heads/sp", "main:refs/heads/sp/x", check=False)
    assert c.returncode != 0
    assert re.search(r"^\*\trefs/heads/main:refs/heads/sp\t\[new branch\]$", c.stdout, re.MULTILINE), c.stdout
    assert "'refs/heads/sp' exists; cannot create 'refs/heads/sp/x'" in c.stdout
    # D: a ref above an existing one.
    forge.push(work, 1, "hostile", "main:refs/heads/rd/x")
    d = forge.push(work, 2, "hostile", "main:refs/heads/rd", check=False)
    assert d.returncode != 0 and "'refs/heads/rd/x' exists; cannot create 'refs/heads/rd'" in d.stdout
    # Every node carries on: new blocks are finalized and applied everywhere, and agree.
    commit(work, "after.txt", "still here\n")
    position = pushed_position(forge.push(work, 3, "hostile", "main"))
    expected = {
        "refs/heads/main": head(work),
        "refs/heads/df": tip,
        "refs/heads/sp": tip,
        "refs/heads/rd/x": tip,
        "HEAD": head(work),
    }
    for i in range(4):
        assert forge.remote_refs(i, "hostile", position) == expected
    assert wait_until(lambda: min(_heights(forge)) >= position, 30)


def test_a_node_that_cannot_write_a_repository_repairs_it_and_nobody_else_notices(
    forge: Forge, tmp_path: Path
) -> None:
    forge.create_repo("fragile")
    work = _work(tmp_path)
    position = pushed_position(forge.push(work, 0, "fragile", "main"))
    with forge.api(2) as c:
        repo_id = c.get("/repos/alice/fragile", headers={"X-Stele-Min-Position": str(position)}).json()[
            "node_id"
        ]
    bare = forge.net.nodes[2].dir / "git" / "repos" / f"{repo_id}.git"
    assert (bare / "objects" / "pack").is_dir()
    # Damage node 2's copy where the next push must write: its pack directory becomes a file.
    shutil.rmtree(bare / "objects" / "pack")
    (bare / "objects" / "pack").write_text("not a directory\n")
    before = [_metric(_metrics(forge, i), 'stele_git_repairs_total{outcome="marked"}') for i in range(4)]
    commit(work, "more.txt", "more\n")
    position = pushed_position(forge.push(work, 0, "fragile", "main"))
    # Node 2 noticed, rebuilt the repository from the ledger, and serves it again.
    assert wait_until(
        lambda: (
            _metric(_metrics(forge, 2), 'stele_git_repairs_total{outcome="repaired"}') >= 1
            and _metric(_metrics(forge, 2), "stele_git_repos_needing_repair") == 0
        ),
        60,
    )
    after = [_metric(_metrics(forge, i), 'stele_git_repairs_total{outcome="marked"}') for i in range(4)]
    assert after[2] == before[2] + 1
    assert [after[i] for i in (0, 1, 3)] == [before[i] for i in (0, 1, 3)]  # the others never noticed
    clone = forge.clone(2, "fragile", tmp_path / "clone", position)
    assert head(clone) == head(work)
    git("fsck", "--strict", cwd=clone)
    assert wait_until(lambda: min(_heights(forge)) >= position, 30)
    # An operator can ask for a rebuild too (here after the refs were deleted by hand).
    (bare / "packed-refs").unlink()
    token_file = tmp_path / "admin.token"
    token_file.write_text(forge.net.admin_token() or "")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "api.cli",
            "node",
            "repair-repo",
            "alice/fragile",
            "--node",
            forge.net.url(2),
            "--token-file",
            str(token_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "alice/fragile: repaired" in done.stdout, done.stderr
    assert forge.remote_refs(2, "fragile", position)["refs/heads/main"] == head(work)
