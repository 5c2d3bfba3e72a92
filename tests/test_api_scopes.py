"""Token scopes end to end: a real node, PyGithub for the REST API, the real `git` for git.

`boss` owns `boss/pub`, `boss/priv` (private) and the organization `acme` (team `devs`);
`mate` joins and leaves acme, `crew` is a member of acme who joins and leaves the team.
Every token in `TOKENS` belongs to boss, who may do everything below: what a token may
do is only a question of its scopes. Each operation is tried with every token; the
status, `X-OAuth-Scopes` and `X-Accepted-OAuth-Scopes` are what GitHub answers (see the
scope table in docs/api.md).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from github import Auth, Github, GithubException
from nacl.signing import SigningKey

from api.v3.users import ssh_ed25519
from commands import scopes
from tests.api_node import ApiNode, create_user, expect, start_api_node
from tests.test_git_http import git

pytestmark = pytest.mark.timeout(300)

V3 = "/api/v3"

#: The matrix of tokens (all boss's): a name and its scopes.
TOKENS: dict[str, tuple[str, ...]] = {
    "none": (),
    "public_repo": ("public_repo",),
    "repo": ("repo",),
    "read:org": ("read:org",),
    "write:org": ("write:org",),
    "admin:org": ("admin:org",),
    "user": ("user",),
    "delete_repo": ("delete_repo",),
    "read:public_key": ("read:public_key",),
    "admin:public_key": ("admin:public_key",),
}


def slug(name: str) -> str:
    return name.replace(":", "-").replace("_", "-")


@dataclass
class World:
    node: ApiNode
    tokens: dict[str, str] = field(default_factory=dict)
    boss_token: str = ""

    def github(self, name: str, *, lazy: bool = False) -> Github:
        """PyGithub for token `name`; `lazy`: objects are not fetched before they are used."""
        token = Auth.Token(self.tokens[name])
        return Github(base_url=f"{self.node.url}{V3}", auth=token, retry=None, lazy=lazy)

    def git_url(self, name: str, repo: str) -> str:
        return self.node.url.replace("http://", f"http://x:{self.tokens[name]}@") + f"/boss/{repo}.git"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = start_api_node(tmp_path_factory.mktemp("api-scopes"))
    try:
        admin = node.client(node.admin_token)
        w = World(node, boss_token=create_user(admin, "boss"))
        create_user(admin, "mate")
        create_user(admin, "crew")
        boss = node.client(w.boss_token)
        expect(boss.post(f"{V3}/user/repos", json={"name": "pub"}), 201)
        expect(boss.post(f"{V3}/user/repos", json={"name": "priv", "private": True}), 201)
        expect(admin.post(f"{V3}/admin/organizations", json={"login": "acme", "admin": "boss"}), 201)
        expect(boss.put(f"{V3}/orgs/acme/memberships/crew", json={"role": "member"}), 200)
        expect(boss.post(f"{V3}/orgs/acme/teams", json={"name": "devs", "privacy": "closed"}), 201)
        for name, granted in TOKENS.items():
            issued = expect(
                admin.post(f"{V3}/admin/users/boss/authorizations", json={"scopes": list(granted)}), 201
            )
            w.tokens[name] = issued["token"]
            for prefix, private in (("doomed", False), ("doomedp", True)):
                body = {"name": f"{prefix}-{slug(name)}", "private": private}
                expect(boss.post(f"{V3}/user/repos", json=body), 201)
        yield w
    finally:
        node.stop()


# -- the operations, as a GitHub client does them ------------------------------------------

Op = Callable[[World, str, Github], Any]


def read_public(w: World, name: str, g: Github) -> Any:
    return g.get_repo("boss/pub")


def read_private(w: World, name: str, g: Github) -> Any:
    return g.get_repo("boss/priv")


def create_public(w: World, name: str, g: Github) -> Any:
    return g.get_user().create_repo(f"pub-{slug(name)}")


def create_private(w: World, name: str, g: Github) -> Any:
    return g.get_user().create_repo(f"priv-{slug(name)}", private=True)


def delete_public(w: World, name: str, g: Github) -> Any:
    return g.get_repo(f"boss/doomed-{slug(name)}").delete()


def delete_private(w: World, name: str, g: Github) -> Any:
    return g.get_repo(f"boss/doomedp-{slug(name)}").delete()


def org_membership(w: World, name: str, g: Github) -> Any:
    org = g.get_organization("acme")
    mate = g.get_user("mate")
    org.add_to_members(mate, "member")
    org.remove_from_membership(mate)


def read_team(w: World, name: str, g: Github) -> Any:
    team = g.get_organization("acme").get_team_by_slug("devs")
    assert team.name == "devs"
    return team


def team_membership(w: World, name: str, g: Github) -> Any:
    team = g.get_organization("acme").get_team_by_slug("devs")
    crew = g.get_user("crew")
    team.add_membership(crew)
    team.remove_membership(crew)


def add_key(w: World, name: str, g: Github) -> Any:
    seed = hashlib.sha256(f"key/{name}".encode()).digest()
    line = ssh_ed25519(bytes(SigningKey(seed).verify_key).hex())
    return g.get_user().create_key(f"laptop {name}", line)


def list_keys(w: World, name: str, g: Github) -> Any:
    return list(g.get_user().get_keys())


#: Each operation: which tokens may do it, what the others get, and what the route accepts.
OPS: dict[str, tuple[Op, frozenset[str], int, str]] = {
    "read public repo": (read_public, frozenset(TOKENS), 200, "repo"),
    "read private repo": (read_private, frozenset({"repo"}), 404, "repo"),
    "create public repo": (create_public, frozenset({"public_repo", "repo"}), 404, "public_repo, repo"),
    "create private repo": (create_private, frozenset({"repo"}), 404, "repo"),
    "delete public repo": (delete_public, frozenset({"delete_repo"}), 403, "delete_repo"),
    "delete private repo": (delete_private, frozenset({"delete_repo"}), 404, "delete_repo"),
    "org membership": (org_membership, frozenset({"write:org", "admin:org"}), 404, "admin:org, write:org"),
    "read team": (
        read_team,
        frozenset({"repo", "read:org", "write:org", "admin:org"}),
        404,
        "admin:org, read:org, repo, write:org",
    ),
    "team membership": (
        team_membership,
        frozenset({"repo", "write:org", "admin:org"}),
        404,
        "admin:org, repo, write:org",
    ),
    "add key": (add_key, frozenset({"admin:public_key"}), 404, "admin:public_key, write:public_key"),
    "list keys": (
        list_keys,
        frozenset({"read:public_key", "admin:public_key"}),
        404,
        "admin:public_key, read:public_key, write:public_key",
    ),
}

#: Operations run with a lazy client: only the request that changes something is sent.
LAZY = frozenset({"delete public repo", "delete private repo", "team membership"})

#: Refusals that differ from the operation's usual one: (operation, token) -> status.
SPECIAL: dict[tuple[str, str], int] = {
    ("delete private repo", "repo"): 403,  # it can see the repository, so: admin rights
}


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


@pytest.mark.parametrize("op_name", list(OPS))
@pytest.mark.parametrize("token", list(TOKENS))
def test_scope_matrix_with_pygithub(world: World, token: str, op_name: str) -> None:
    op, allowed, refused_status, accepted = OPS[op_name]
    g = world.github(token, lazy=op_name in LAZY)
    try:
        result = op(world, token, g)
    except GithubException as exc:
        assert token not in allowed, f"{op_name} with {token}: {exc.status} {exc.data}"
        assert exc.status == SPECIAL.get((op_name, token), refused_status), (op_name, token, exc.data)
        assert _header(exc.headers, "X-OAuth-Scopes") == scopes.header(TOKENS[token])
        assert _header(exc.headers, "X-Accepted-OAuth-Scopes") == accepted
        return
    assert token in allowed, f"{op_name} with {token} should have been refused"
    # PyGithub keeps the X-OAuth-Scopes of the last response, whatever it answered.
    assert g.oauth_scopes == (scopes.header(TOKENS[token]).split(", "))
    raw = getattr(result, "raw_headers", None)
    if raw:
        assert _header(raw, "X-Accepted-OAuth-Scopes") == accepted


@pytest.mark.parametrize("token", list(TOKENS))
def test_private_profile_needs_user(world: World, token: str) -> None:
    me = world.github(token).get_user()
    assert me.login == "boss"  # GET /user works with any scope
    if token == "user":
        assert me.total_private_repos is not None and me.total_private_repos >= 1
        assert me.email == "boss@example.com"
    else:
        assert me.total_private_repos is None and me.email is None
    assert _header(me.raw_headers, "X-Accepted-OAuth-Scopes") == "read:user, user"


def test_headers_on_plain_requests(world: World) -> None:
    anonymous = world.node.client()
    r = anonymous.get(f"{V3}/repos/boss/pub")
    assert r.status_code == 200 and "x-oauth-scopes" not in r.headers
    assert "x-accepted-oauth-scopes" not in r.headers
    full = world.node.client(world.boss_token)
    r = full.get(f"{V3}/repos/boss/priv")
    assert r.status_code == 200
    assert r.headers["x-oauth-scopes"] == "admin:org, admin:public_key, delete_repo, repo, user"
    assert r.headers["x-accepted-oauth-scopes"] == "repo"
    r = full.put(f"{V3}/orgs/acme/memberships/mate", json={"role": "member"})
    assert r.status_code == 200 and r.headers["x-accepted-oauth-scopes"] == "admin:org, write:org"
    r = full.delete(f"{V3}/orgs/acme/memberships/mate")
    assert r.status_code == 204 and r.headers["x-accepted-oauth-scopes"] == "admin:org, write:org"
    # Native routes carry the token's scopes too; a bad token gets neither header.
    r = full.get("/api/v1/status")
    assert r.status_code == 200 and r.headers["x-oauth-scopes"].startswith("admin:org")
    r = world.node.client("stl_not-a-token").get(f"{V3}/repos/boss/pub")
    assert r.status_code == 401 and "x-oauth-scopes" not in r.headers


def test_lists_leave_out_private_repositories_for_a_token_without_repo(world: World) -> None:
    names = {r.full_name for r in world.github("public_repo").get_user().get_repos()}
    assert "boss/pub" in names and "boss/priv" not in names
    names = {r.full_name for r in world.github("repo").get_user().get_repos()}
    assert {"boss/pub", "boss/priv"} <= names


def test_site_administration_needs_site_admin(world: World) -> None:
    admin = world.node.client(world.node.admin_token)
    narrow = expect(
        admin.post(f"{V3}/admin/users/admin/authorizations", json={"scopes": ["repo", "user"]}), 201
    )
    c = world.node.client(narrow["token"])
    r = c.post(f"{V3}/admin/users", json={"login": "made-by-narrow", "email": "m@example.com"})
    assert r.status_code == 403 and r.json()["message"] == scopes.NEED_SITE_ADMIN_SCOPE
    assert r.headers["x-accepted-oauth-scopes"] == "site_admin"
    assert c.post(f"{V3}/admin/users/mate/authorizations", json={"scopes": []}).status_code == 403
    assert c.delete(f"{V3}/admin/users/mate/authorizations").status_code == 403
    assert c.get("/api/v1/events").status_code == 403
    assert admin.get("/api/v1/events").status_code == 200
    # Unknown scopes are refused; the ones given are stored as GitHub normalizes them.
    r = admin.post(f"{V3}/admin/users/mate/authorizations", json={"scopes": ["repo", "everything"]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "scopes"
    issued = expect(
        admin.post(f"{V3}/admin/users/mate/authorizations", json={"scopes": ["user:email", "user", "repo"]}),
        201,
    )
    assert issued["scopes"] == ["user", "repo"]


# -- git over HTTP -------------------------------------------------------------------------

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git CLI")


@pytest.fixture(scope="module")
def pushed(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work tree whose `main` was pushed to boss/pub and boss/priv with boss's full token."""
    work = tmp_path_factory.mktemp("scopes-work")
    git("init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("scopes\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "first", cwd=work)
    for repo in ("pub", "priv"):
        url = world.node.url.replace("http://", f"http://x:{world.boss_token}@") + f"/boss/{repo}.git"
        git("push", "-q", url, "main", cwd=work)
    return work


@needs_git
@pytest.mark.parametrize("token", list(TOKENS))
def test_git_clone_and_push_by_scope(world: World, pushed: Path, token: str, tmp_path: Path) -> None:
    # Clone: a public repository with any token, a private one with `repo` only.
    public = git("clone", "-q", world.git_url(token, "pub"), str(tmp_path / "pub"), check=False)
    assert public.returncode == 0, public.stderr
    private = git("clone", "-q", world.git_url(token, "priv"), str(tmp_path / "priv"), check=False)
    if token == "repo":
        assert private.returncode == 0, private.stderr
    else:
        assert private.returncode != 0 and "not found" in private.stderr.lower(), private.stderr
    # Push: `repo`, or `public_repo` for the public repository.
    branch = f"HEAD:refs/heads/by-{slug(token)}"
    push_public = git("push", "-q", world.git_url(token, "pub"), branch, cwd=pushed, check=False)
    if token in ("repo", "public_repo"):
        assert push_public.returncode == 0, push_public.stderr
    else:
        assert push_public.returncode != 0 and "403" in push_public.stderr, push_public.stderr
    push_private = git("push", "-q", world.git_url(token, "priv"), branch, cwd=pushed, check=False)
    if token == "repo":
        assert push_private.returncode == 0, push_private.stderr
    else:
        assert push_private.returncode != 0 and "not found" in push_private.stderr.lower(), (
            push_private.stderr
        )


@needs_git
def test_git_responses_carry_the_tokens_scopes(world: World, pushed: Path) -> None:
    with httpx.Client(auth=("x", world.tokens["public_repo"])) as c:
        r = c.get(f"{world.node.url}/boss/pub.git/info/refs", params={"service": "git-receive-pack"})
        assert r.status_code == 200 and r.headers["x-oauth-scopes"] == "public_repo"
        r = c.get(f"{world.node.url}/boss/priv.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 404 and r.headers["x-oauth-scopes"] == "public_repo"


def test_native_routes_show_transactions_only_as_far_as_the_scopes_reach(world: World) -> None:
    boss = world.node.client(world.boss_token)
    created = boss.post(f"{V3}/user/repos", json={"name": "hush", "private": True})
    assert created.status_code == 201, created.text
    height = int(created.headers["x-stele-position"])  # the block that created it

    def block(token: str) -> list[dict[str, Any]]:
        body = expect(world.node.client(world.tokens[token]).get(f"/api/v1/blocks/{height}"), 200)
        return [t for t in body["transactions"] if t.get("kind") == "repo.create" or t.get("redacted")]

    shown = [t for t in block("repo") if t.get("payload", {}).get("name") == "hush"]
    assert len(shown) == 1 and shown[0]["actor"] == "boss"
    tx_id = shown[0]["tx_id"]
    hidden = block("public_repo")
    assert {"tx_id": tx_id, "redacted": True} in hidden  # boss's own transaction, but private
    assert world.node.client(world.tokens["repo"]).get(f"/api/v1/receipts/{tx_id}").status_code == 200
    assert world.node.client(world.tokens["public_repo"]).get(f"/api/v1/receipts/{tx_id}").status_code == 404


def test_a_write_answers_with_what_the_write_accepts(world: World) -> None:
    """PUT protection reads the repository back afterwards; the header stays the write's."""
    c = world.node.client(world.tokens["public_repo"])
    body = {"required_status_checks": None, "enforce_admins": None}
    body |= {"required_pull_request_reviews": None, "restrictions": None}
    r = c.put(f"{V3}/repos/boss/pub/branches/guarded/protection", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-accepted-oauth-scopes"] == "public_repo, repo"
    r = world.node.client(world.tokens["user"]).delete(f"{V3}/repos/boss/pub/branches/guarded/protection")
    assert r.status_code == 404 and r.headers["x-accepted-oauth-scopes"] == "public_repo, repo"
