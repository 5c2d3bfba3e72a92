"""Who can see a transaction, through the real HTTP API of a real node (docs/api.md).

The world (one node for the module): `alice` owns `alice/pub` (public) and `alice/sec`
(private; `bob` may read it) and pushed a branch to it; she owns organization `acme`,
where `bob` and `dave` are members, with a secret team `core` (only `dave` in it) and a
closed team `open`; `carol` has no relation to anything; `admin` is the site admin.
Every case is one transaction, and every viewer asks for its receipt, its block, and
(where the test holds its bytes) resubmits it.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from commands.envelope import sign_as_user
from tests.api_node import ApiNode, create_user, expect, start_api_node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI"),
]

V3 = "/api/v3"
VIEWERS = ("admin", "alice", "bob", "carol", "dave", "anonymous")
EVERYONE = frozenset(VIEWERS)
GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "HOME": "/nonexistent",
}


@dataclass
class Case:
    tx_id: str
    height: int
    seen_by: frozenset[str]
    raw: bytes | None = None  # the bytes, where the test made them itself


@dataclass
class World:
    node: ApiNode
    clients: dict[str, httpx.Client]
    tokens: dict[str, str]
    cases: dict[str, Case] = field(default_factory=dict)

    def tx_at(self, height: int, kind: str) -> str:
        """The id of the one transaction of `kind` in the block at `height` (as the site admin sees it)."""
        block = expect(self.clients["admin"].get(f"/api/v1/blocks/{height}"), 200)
        ids = [t["tx_id"] for t in block["transactions"] if t.get("kind") == kind]
        assert len(ids) == 1, block["transactions"]
        return str(ids[0])

    def record(self, name: str, response: httpx.Response, kind: str, seen_by: Set[str]) -> None:
        assert response.status_code < 300, response.text
        height = int(response.headers["X-Stele-Position"])
        self.cases[name] = Case(self.tx_at(height, kind), height, frozenset(seen_by))


def _push_branch(world: World, tmp: Path) -> int:
    """alice pushes branch `secret-plan` to alice/sec with the real git client; its log position."""
    work = tmp / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], env=GIT_ENV, check=True)
    (work / "plan.txt").write_text("world domination\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "plan"]):
        subprocess.run(["git", *args], cwd=work, env=GIT_ENV, check=True)
    url = world.node.url.replace("http://", f"http://alice:{world.tokens['alice']}@") + "/alice/sec.git"
    out = subprocess.run(
        ["git", "push", "--progress", url, "main:secret-plan"],
        cwd=work,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    found = re.search(r"decided at log position (\d+)", out.stderr)
    assert found is not None, out.stderr
    return int(found.group(1))


def _forged(world: World, nonce: str) -> bytes:
    """A transaction claiming to be carol's, signed with a key nobody registered (refused 401)."""
    return sign_as_user(
        chain_id="stele-api-test",
        kind="repo.update",
        payload={"owner": "alice", "repo": "sec", "description": "pwned"},
        actor="carol",
        nonce=nonce,
        submitted_by=0,
        seed=secrets.token_bytes(32),
        key_id="made-up",
    ).encode()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("api-visibility")
    node = start_api_node(tmp / "node")
    try:
        admin = node.client(node.admin_token)
        tokens = {"admin": node.admin_token}
        clients = {"admin": admin, "anonymous": node.client()}
        for login in ("alice", "bob", "carol", "dave"):
            tokens[login] = create_user(admin, login)
            clients[login] = node.client(tokens[login])
        w = World(node, clients, tokens)
        alice = clients["alice"]
        readers = {"admin", "alice", "bob"}
        members = {"admin", "alice", "bob", "dave"}

        w.record("public repo", alice.post(f"{V3}/user/repos", json={"name": "pub"}), "repo.create", EVERYONE)
        made = alice.post(f"{V3}/user/repos", json={"name": "sec", "private": True})
        w.record("private repo", made, "repo.create", readers)
        grant = alice.put(f"{V3}/repos/alice/sec/collaborators/bob", json={"permission": "pull"})
        w.record("collaborator on a private repo", grant, "collaborator.set", readers)
        pushed = _push_branch(w, tmp)
        w.cases["push to a private repo"] = Case(w.tx_at(pushed, "git.push_refs"), pushed, frozenset(readers))

        org = admin.post(f"{V3}/admin/organizations", json={"login": "acme", "admin": "alice"})
        w.record("organization", org, "org.create", members)
        for login in ("bob", "dave"):
            expect(alice.put(f"{V3}/orgs/acme/memberships/{login}", json={"role": "member"}), 200)
        team = alice.post(f"{V3}/orgs/acme/teams", json={"name": "core", "privacy": "secret"})
        w.record("secret team", team, "team.create", {"admin", "alice", "dave"})
        expect(alice.put(f"{V3}/orgs/acme/teams/core/memberships/dave", json={"role": "member"}), 200)
        team = alice.post(f"{V3}/orgs/acme/teams", json={"name": "open", "privacy": "closed"})
        w.record("closed team", team, "team.create", members)

        token = admin.post(f"{V3}/admin/users/bob/authorizations", json={"scopes": ["repo"]})
        w.record("token issued to bob", token, "token.issue", {"admin"})

        later = alice.post(f"{V3}/user/repos", json={"name": "later"})
        w.record("repo made private later", later, "repo.create", {"admin", "alice"})
        expect(alice.patch(f"{V3}/repos/alice/later", json={"private": True}), 200)
        gone = alice.post(f"{V3}/user/repos", json={"name": "gone"})
        w.record("repo deleted later", gone, "repo.create", {"admin", "alice"})
        expect(alice.put(f"{V3}/repos/alice/gone/collaborators/bob", json={"permission": "pull"}), 201)
        assert alice.delete(f"{V3}/repos/alice/gone").status_code == 204

        forged = _forged(w, "f" * 32)
        r = clients["anonymous"].post("/api/v1/transactions", params={"wait": "true"}, content=forged)
        body = expect(r, 200)
        assert body["status"] == "finalized" and "receipt" not in body  # anonymous may not see it
        tx_id = str(body["tx_id"])
        w.cases["forged actor (401)"] = Case(tx_id, int(body["height"]), frozenset(readers), forged)
        yield w
    finally:
        node.stop()


CASES = (
    "public repo",
    "private repo",
    "collaborator on a private repo",
    "push to a private repo",
    "organization",
    "secret team",
    "closed team",
    "token issued to bob",
    "repo made private later",
    "repo deleted later",
    "forged actor (401)",
)


def _unknown_receipt(w: World, viewer: str) -> httpx.Response:
    return w.clients[viewer].get(f"/api/v1/receipts/{'0' * 64}")


@pytest.mark.parametrize("case", CASES)
def test_receipts_only_for_those_who_may_see_them(world: World, case: str) -> None:
    c = world.cases[case]
    for viewer in VIEWERS:
        r = world.clients[viewer].get(f"/api/v1/receipts/{c.tx_id}")
        if viewer in c.seen_by:
            assert r.status_code == 200, (viewer, r.text)
            assert r.json()["tx_id"] == c.tx_id and r.json()["height"] == c.height
        else:
            # Exactly the answer for a transaction that does not exist.
            unknown = _unknown_receipt(world, viewer)
            assert r.status_code == unknown.status_code == 404, (viewer, r.text)
            message = unknown.json()["message"].replace("0" * 64, "X")
            assert r.json()["message"].replace(c.tx_id, "X") == message
            assert r.json().keys() == unknown.json().keys()


@pytest.mark.parametrize("case", CASES)
def test_blocks_redact_what_the_caller_may_not_see(world: World, case: str) -> None:
    c = world.cases[case]
    for viewer in VIEWERS:
        block = expect(world.clients[viewer].get(f"/api/v1/blocks/{c.height}"), 200)
        assert c.tx_id in block["block"]["tx_ids"]
        (entry,) = [t for t in block["transactions"] if t["tx_id"] == c.tx_id]
        if viewer in c.seen_by:
            assert entry["kind"] and entry["actor"] and entry["payload"], (viewer, entry)
            assert entry["receipt"]["tx_id"] == c.tx_id and "auth" not in entry
        else:
            assert entry == {"tx_id": c.tx_id, "redacted": True}, viewer


def test_what_the_block_shows(world: World) -> None:
    c = world.cases["push to a private repo"]
    entry = next(
        t
        for t in expect(world.clients["bob"].get(f"/api/v1/blocks/{c.height}"), 200)["transactions"]
        if t["tx_id"] == c.tx_id
    )
    assert entry["kind"] == "git.push_refs" and entry["actor"] == "alice"
    assert entry["payload"]["updates"][0]["ref"] == "refs/heads/secret-plan"
    assert entry["receipt"]["ok"] is True and entry["receipt"]["result"]["refs"][0]["ok"] is True
    assert set(entry) == {"tx_id", "index", "kind", "actor", "payload", "submitted_by", "receipt"}
    carol = expect(world.clients["carol"].get(f"/api/v1/blocks/{c.height}"), 200)
    assert "secret-plan" not in str(carol) and "alice" not in str(carol["transactions"])


def test_resubmitting_bytes_tells_the_outcome_only_to_those_who_may_see_it(world: World) -> None:
    c = world.cases["forged actor (401)"]
    assert c.raw is not None
    for viewer in VIEWERS:
        body = expect(world.clients[viewer].post("/api/v1/transactions", content=c.raw), 200)
        assert body["status"] == "finalized" and body["height"] == c.height
        if viewer in c.seen_by:
            assert body["receipt"]["code"] == 401, viewer
        else:
            assert "receipt" not in body, viewer


def test_the_precheck_answers_only_those_who_may_see_it(world: World) -> None:
    """A refusal before submission is an outcome too: others just have the transaction queued."""
    forged = _forged(world, "e" * 32)
    r = world.clients["alice"].post("/api/v1/transactions", content=forged)  # she reads alice/sec
    assert r.status_code == 401 and "signing key" in r.json()["message"]
    r = world.clients["carol"].post("/api/v1/transactions", content=forged)
    assert r.status_code == 202 and r.json()["status"] in ("pending", "finalized"), r.text


def test_bad_credentials_are_401_on_every_transaction_route(world: World) -> None:
    bad = {"Authorization": "token stl_not-a-token"}
    c = world.cases["public repo"]
    anonymous = world.clients["anonymous"]
    assert anonymous.get(f"/api/v1/receipts/{c.tx_id}", headers=bad).status_code == 401
    assert anonymous.get(f"/api/v1/blocks/{c.height}", headers=bad).status_code == 401
    assert anonymous.post("/api/v1/transactions", content=b"x", headers=bad).status_code == 401


def test_the_event_stream_stays_with_site_admins(world: World) -> None:
    assert world.clients["anonymous"].get("/api/v1/events").status_code == 401
    for viewer in ("alice", "bob", "carol", "dave"):
        assert world.clients[viewer].get("/api/v1/events").status_code == 403
    assert expect(world.clients["admin"].get("/api/v1/events"), 200)["events"]
