"""The GitHub-compatible REST API (/api/v3) against a real single-validator node process.

Happy paths of every route, GitHub's object shapes, pagination `Link` headers, the
401/403/404/422 bodies, and the log positions (`X-Stele-Position`, `min_position`).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_node import ADMIN_LOGIN, ApiNode, create_user, expect, start_api_node

pytestmark = pytest.mark.timeout(120)

V3 = "/api/v3"
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNode]:
    n = start_api_node(tmp_path_factory.mktemp("api-v3"))
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture(scope="module")
def admin(node: ApiNode) -> httpx.Client:
    return node.client(node.admin_token)


@pytest.fixture(scope="module")
def anon(node: ApiNode) -> httpx.Client:
    return node.client()


_counter = iter(range(10_000))


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


def user(node: ApiNode, admin: httpx.Client, prefix: str = "u") -> tuple[str, httpx.Client]:
    login = unique(prefix)
    return login, node.client(create_user(admin, login))


def position(response: httpx.Response) -> int:
    value = response.headers.get("X-Stele-Position")
    assert value is not None and value.isdigit(), f"no position on {response.request.url.path}"
    return int(value)


def error_body(response: httpx.Response, status: int, message: str | None = None) -> dict[str, Any]:
    body = expect(response, status)
    assert isinstance(body, dict) and isinstance(body.get("message"), str)
    assert "documentation_url" in body
    if message is not None:
        assert body["message"] == message
    return body


def validation_errors(response: httpx.Response) -> list[dict[str, Any]]:
    body = error_body(response, 422, "Validation Failed")
    errors = body["errors"]
    assert isinstance(errors, list) and errors
    for e in errors:
        assert {"resource", "code"} <= e.keys()
    return errors


# -- shapes --------------------------------------------------------------------------------

USER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "login": str,
    "id": int,
    "node_id": str,
    "avatar_url": str,
    "url": str,
    "html_url": str,
    "repos_url": str,
    "organizations_url": str,
    "type": str,
    "site_admin": bool,
}
REPO_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": int,
    "node_id": str,
    "name": str,
    "full_name": str,
    "private": bool,
    "owner": dict,
    "html_url": str,
    "description": (str, type(None)),
    "fork": bool,
    "url": str,
    "clone_url": str,
    "default_branch": str,
    "archived": bool,
    "disabled": bool,
    "visibility": str,
    "created_at": str,
    "updated_at": str,
    "pushed_at": str,
}


def check_fields(obj: dict[str, Any], fields: dict[str, type | tuple[type, ...]]) -> None:
    for name, kind in fields.items():
        assert name in obj, f"missing {name}"
        assert isinstance(obj[name], kind), f"{name}: {obj[name]!r} is not {kind}"


def check_user(obj: dict[str, Any], login: str, node: ApiNode) -> None:
    check_fields(obj, USER_FIELDS)
    assert obj["login"] == login
    assert obj["url"] == f"{node.url}{V3}/users/{login}"
    assert obj["id"] == int(obj["node_id"].replace("-", "")[:12], 16)


def check_repo(obj: dict[str, Any], full_name: str, node: ApiNode, *, private: bool) -> None:
    check_fields(obj, REPO_FIELDS)
    assert obj["full_name"] == full_name
    assert obj["name"] == full_name.split("/")[1]
    assert obj["private"] is private
    assert obj["visibility"] == ("private" if private else "public")
    assert obj["url"] == f"{node.url}{V3}/repos/{full_name}"
    assert obj["clone_url"] == f"{node.url}/{full_name}.git"
    assert obj["owner"]["login"] == full_name.split("/")[0]
    for stamp in ("created_at", "updated_at", "pushed_at"):
        assert ISO.match(obj[stamp]), obj[stamp]


# -- users and tokens ----------------------------------------------------------------------


def test_authenticated_user(node: ApiNode, admin: httpx.Client) -> None:
    r = admin.get(f"{V3}/user")
    body = expect(r, 200)
    check_user(body, ADMIN_LOGIN, node)
    assert body["site_admin"] is True
    assert body["email"] == "admin@example.com"
    assert body["type"] == "User"
    assert ISO.match(body["created_at"])
    assert isinstance(body["public_repos"], int)
    assert isinstance(body["total_private_repos"], int)
    position(r)
    # The Bearer scheme works too.
    bearer = node.client(node.admin_token, scheme="Bearer")
    assert expect(bearer.get(f"{V3}/user"), 200)["login"] == ADMIN_LOGIN


def test_create_user_and_impersonation_token(node: ApiNode, admin: httpx.Client) -> None:
    login = unique("newbie")
    r = admin.post(f"{V3}/admin/users", json={"login": login, "email": f"{login}@example.com"})
    body = expect(r, 201)
    check_user(body, login, node)
    assert body["site_admin"] is False
    created_at = position(r)
    assert created_at >= 1

    r = admin.post(f"{V3}/admin/users/{login}/authorizations", json={"scopes": ["repo", "user"]})
    issued = expect(r, 201)
    assert position(r) > created_at
    for name in ("id", "token", "scopes", "note", "url", "created_at", "updated_at", "hashed_token"):
        assert name in issued
    assert isinstance(issued["id"], int)
    token = issued["token"]
    assert token.startswith("stl_")
    assert issued["scopes"] == ["repo", "user"]
    assert issued["hashed_token"] == hashlib.sha256(token.encode()).hexdigest()
    assert issued["token_last_eight"] == token[-8:]
    assert issued["user"]["login"] == login
    assert ISO.match(issued["created_at"])

    me = expect(node.client(token).get(f"{V3}/user"), 200)
    assert me["login"] == login and me["email"] == f"{login}@example.com"
    assert token not in node.log_path.read_text(errors="replace")


def test_revoke_impersonation_tokens(node: ApiNode, admin: httpx.Client) -> None:
    login, first = user(node, admin)
    second = expect(admin.post(f"{V3}/admin/users/{login}/authorizations", json={"scopes": []}), 201)
    expect(node.client(second["token"]).get(f"{V3}/user"), 200)
    r = admin.delete(f"{V3}/admin/users/{login}/authorizations")
    expect(r, 204)
    position(r)
    error_body(first.get(f"{V3}/user"), 401, "Bad credentials")
    error_body(node.client(second["token"]).get(f"{V3}/user"), 401, "Bad credentials")
    # Nothing left to revoke is still a success; an unknown user is 404.
    expect(admin.delete(f"{V3}/admin/users/{login}/authorizations"), 204)
    error_body(admin.delete(f"{V3}/admin/users/nobody-here/authorizations"), 404)


def test_get_user(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    login, client = user(node, admin)
    public = expect(anon.get(f"{V3}/users/{login}"), 200)
    check_user(public, login, node)
    assert public["email"] is None  # not shown to others
    assert public["public_repos"] == 0
    assert ISO.match(public["created_at"])
    own = expect(client.get(f"{V3}/users/{login.upper()}"), 200)  # logins are case-insensitive
    assert own["login"] == login and own["email"] == f"{login}@example.com"
    error_body(anon.get(f"{V3}/users/no-such-user"), 404, "Not Found")


def test_create_user_errors(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    login, client = user(node, admin)
    errors = validation_errors(
        admin.post(f"{V3}/admin/users", json={"login": login.upper(), "email": "x@example.com"})
    )
    assert errors[0]["code"] == "already_exists" and errors[0]["field"] == "login"
    assert errors[0]["resource"] == "User"

    errors = validation_errors(admin.post(f"{V3}/admin/users", json={"login": "-bad-", "email": "nope"}))
    assert {(e["field"], e["code"]) for e in errors} == {("login", "invalid"), ("email", "invalid")}
    errors = validation_errors(admin.post(f"{V3}/admin/users", json={"login": "fine"}))
    assert errors == [
        {"resource": "User", "code": "missing_field", "field": "email", "message": "Field required"}
    ]
    errors = validation_errors(admin.post(f"{V3}/admin/users", json={"login": 5, "email": "a@b.co"}))
    assert errors[0]["field"] == "login"
    error_body(
        admin.post(f"{V3}/admin/users", content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "Problems parsing JSON",
    )
    error_body(admin.post(f"{V3}/admin/users", json=["a"]), 400)

    error_body(client.post(f"{V3}/admin/users", json={"login": "x1", "email": "x@example.com"}), 403)
    error_body(
        anon.post(f"{V3}/admin/users", json={"login": "x1", "email": "x@example.com"}),
        401,
        "Requires authentication",
    )
    error_body(node.client("stl_bogus").get(f"{V3}/users/{login}"), 401, "Bad credentials")
    error_body(client.post(f"{V3}/admin/users/{login}/authorizations", json={"scopes": []}), 403)
    errors = validation_errors(admin.post(f"{V3}/admin/users/{login}/authorizations", json={}))
    assert errors[0]["field"] == "scopes" and errors[0]["code"] == "missing_field"
    error_body(admin.post(f"{V3}/admin/users/nobody-here/authorizations", json={"scopes": []}), 404)


def test_body_content_type_is_not_required(node: ApiNode, admin: httpx.Client) -> None:
    """Like GitHub, the body is read as JSON whatever the declared type (e.g. `curl -d`)."""
    login = unique("curl")
    r = admin.post(
        f"{V3}/admin/users",
        content=f'{{"login": "{login}", "email": "{login}@example.com", "unknown": 1}}'.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert expect(r, 201)["login"] == login


# -- organizations and teams ---------------------------------------------------------------


def test_create_and_get_org(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    owner, _ = user(node, admin)
    org = unique("org")
    r = admin.post(f"{V3}/admin/organizations", json={"login": org, "admin": owner, "profile_name": "Org"})
    body = expect(r, 201)
    position(r)
    for name, kind in {"login": str, "id": int, "node_id": str, "url": str, "repos_url": str}.items():
        assert isinstance(body[name], kind)
    assert body["type"] == "Organization" and body["login"] == org
    assert body["url"] == f"{node.url}{V3}/orgs/{org}"

    got = expect(anon.get(f"{V3}/orgs/{org.upper()}"), 200)
    assert got["id"] == body["id"] and got["public_repos"] == 0 and ISO.match(got["created_at"])
    as_user = expect(anon.get(f"{V3}/users/{org}"), 200)
    assert as_user["type"] == "Organization" and as_user["id"] == body["id"]
    error_body(anon.get(f"{V3}/orgs/no-such-org"), 404, "Not Found")
    error_body(anon.get(f"{V3}/orgs/{owner}"), 404)  # a user is not an organization

    errors = validation_errors(admin.post(f"{V3}/admin/organizations", json={"login": org, "admin": owner}))
    assert errors[0]["code"] == "already_exists" and errors[0]["resource"] == "Organization"
    errors = validation_errors(admin.post(f"{V3}/admin/organizations", json={"login": owner, "admin": owner}))
    assert errors[0]["code"] == "already_exists"  # users and orgs share one namespace
    error_body(admin.post(f"{V3}/admin/organizations", json={"login": unique("o"), "admin": "ghost"}), 404)
    errors = validation_errors(admin.post(f"{V3}/admin/organizations", json={"login": unique("o")}))
    assert errors[0]["field"] == "admin"


def test_org_memberships(node: ApiNode, admin: httpx.Client) -> None:
    owner, owner_client = user(node, admin)
    someone, someone_client = user(node, admin)
    org = unique("org")
    expect(admin.post(f"{V3}/admin/organizations", json={"login": org, "admin": owner}), 201)

    r = owner_client.put(f"{V3}/orgs/{org}/memberships/{someone}", json={"role": "admin"})
    body = expect(r, 200)
    position(r)
    assert body["state"] == "active" and body["role"] == "admin"
    assert body["url"] == f"{node.url}{V3}/orgs/{org}/memberships/{someone}"
    assert body["organization"]["login"] == org and body["user"]["login"] == someone
    body = expect(owner_client.put(f"{V3}/orgs/{org}/memberships/{someone}", json={"role": "member"}), 200)
    assert body["role"] == "member"
    body = expect(owner_client.put(f"{V3}/orgs/{org}/memberships/{someone}"), 200)  # no body: member
    assert body["role"] == "member"

    errors = validation_errors(
        owner_client.put(f"{V3}/orgs/{org}/memberships/{someone}", json={"role": "owner"})
    )
    assert errors[0]["field"] == "role" and errors[0]["resource"] == "Membership"
    # The last owner cannot step down (the ledger's 422 in GitHub's validation shape).
    errors = validation_errors(
        owner_client.put(f"{V3}/orgs/{org}/memberships/{owner}", json={"role": "member"})
    )
    assert errors[0]["code"] == "custom" and "owner" in errors[0]["message"]
    error_body(someone_client.put(f"{V3}/orgs/{org}/memberships/{someone}", json={"role": "admin"}), 403)

    r = owner_client.delete(f"{V3}/orgs/{org}/memberships/{someone}")
    expect(r, 204)
    position(r)
    error_body(owner_client.delete(f"{V3}/orgs/{org}/memberships/{someone}"), 404)
    error_body(owner_client.put(f"{V3}/orgs/{org}/memberships/ghost-user"), 404)
    error_body(owner_client.put(f"{V3}/orgs/ghost-org/memberships/{someone}"), 404)


def test_teams(node: ApiNode, admin: httpx.Client) -> None:
    owner, owner_client = user(node, admin)
    dev, dev_client = user(node, admin)
    outsider, _ = user(node, admin)
    org = unique("org")
    expect(admin.post(f"{V3}/admin/organizations", json={"login": org, "admin": owner}), 201)
    expect(owner_client.put(f"{V3}/orgs/{org}/memberships/{dev}"), 200)

    r = owner_client.post(
        f"{V3}/orgs/{org}/teams", json={"name": "Core Devs", "description": "the core", "privacy": "closed"}
    )
    team = expect(r, 201)
    position(r)
    assert team["slug"] == "core-devs" and team["name"] == "Core Devs"
    assert team["description"] == "the core" and team["privacy"] == "closed"
    assert isinstance(team["id"], int) and team["organization"]["login"] == org
    assert team["url"] == f"{node.url}{V3}/orgs/{org}/teams/core-devs"
    assert team["members_count"] == 0 and team["repos_count"] == 0
    default = expect(owner_client.post(f"{V3}/orgs/{org}/teams", json={"name": "Docs"}), 201)
    assert default["privacy"] == "secret" and default["description"] is None

    errors = validation_errors(owner_client.post(f"{V3}/orgs/{org}/teams", json={"name": "core devs"}))
    assert errors[0]["code"] == "already_exists" and errors[0]["resource"] == "Team"
    errors = validation_errors(
        owner_client.post(f"{V3}/orgs/{org}/teams", json={"name": "x", "privacy": "open"})
    )
    assert errors[0]["field"] == "privacy"
    error_body(dev_client.post(f"{V3}/orgs/{org}/teams", json={"name": "Mine"}), 403)
    error_body(owner_client.post(f"{V3}/orgs/ghost-org/teams", json={"name": "Mine"}), 404)

    r = owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/memberships/{dev}", json={"role": "maintainer"})
    body = expect(r, 200)
    position(r)
    assert body == {
        "url": f"{node.url}{V3}/orgs/{org}/teams/core-devs/memberships/{dev}",
        "role": "maintainer",
        "state": "active",
    }
    assert (
        expect(owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/memberships/{dev}"), 200)["role"]
        == "member"
    )
    errors = validation_errors(owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/memberships/{outsider}"))
    assert errors[0]["code"] == "custom"  # must be an org member first
    error_body(owner_client.put(f"{V3}/orgs/{org}/teams/ghost/memberships/{dev}"), 404)

    # Team access to a repository: pull/push are GitHub's names for read/write.
    expect(owner_client.post(f"{V3}/orgs/{org}/repos", json={"name": "app", "private": True}), 201)
    r = owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/repos/{org}/app", json={"permission": "push"})
    expect(r, 204)
    position(r)
    perm = expect(owner_client.get(f"{V3}/repos/{org}/app/collaborators/{dev}/permission"), 200)
    assert (perm["permission"], perm["role_name"]) == ("write", "write")
    expect(
        owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/repos/{org}/app", json={"permission": "maintain"}),
        204,
    )
    perm = expect(dev_client.get(f"{V3}/repos/{org}/app/collaborators/{dev}/permission"), 200)
    assert (perm["permission"], perm["role_name"]) == ("write", "maintain")
    errors = validation_errors(
        owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/repos/{org}/app", json={"permission": "root"})
    )
    assert errors[0]["field"] == "permission"
    # A repository of another owner cannot be granted to the team.
    expect(owner_client.post(f"{V3}/user/repos", json={"name": "mine"}), 201)
    errors = validation_errors(owner_client.put(f"{V3}/orgs/{org}/teams/core-devs/repos/{owner}/mine"))
    assert errors[0]["code"] == "custom"
    counts = expect(owner_client.post(f"{V3}/orgs/{org}/teams", json={"name": "Again"}), 201)
    assert counts["organization"]["public_repos"] == 0


# -- repositories --------------------------------------------------------------------------


def test_repo_lifecycle(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    owner, client = user(node, admin)
    r = client.post(
        f"{V3}/user/repos",
        json={"name": "proj", "description": "a project", "private": False, "default_branch": "trunk"},
    )
    repo = expect(r, 201)
    position(r)
    check_repo(repo, f"{owner}/proj", node, private=False)
    assert repo["description"] == "a project" and repo["default_branch"] == "trunk"
    assert repo["permissions"] == {
        "admin": True,
        "maintain": True,
        "push": True,
        "triage": True,
        "pull": True,
    }
    assert repo["owner"]["type"] == "User" and "organization" not in repo

    seen = expect(anon.get(f"{V3}/repos/{owner}/PROJ"), 200)
    check_repo(seen, f"{owner}/proj", node, private=False)
    assert "permissions" not in seen  # anonymous: like GitHub, no permissions object
    assert seen["id"] == repo["id"]

    r = client.patch(
        f"{V3}/repos/{owner}/proj",
        json={
            "name": "renamed",
            "description": "new words",
            "visibility": "private",
            "default_branch": "main",
        },
    )
    patched = expect(r, 200)
    position(r)
    check_repo(patched, f"{owner}/renamed", node, private=True)
    assert patched["description"] == "new words" and patched["default_branch"] == "main"
    assert patched["id"] == repo["id"]
    error_body(client.get(f"{V3}/repos/{owner}/proj"), 404)
    error_body(anon.get(f"{V3}/repos/{owner}/renamed"), 404, "Not Found")  # private now

    archived = expect(client.patch(f"{V3}/repos/{owner}/renamed", json={"archived": True}), 200)
    assert archived["archived"] is True
    error_body(client.patch(f"{V3}/repos/{owner}/renamed", json={"description": "no"}), 403)
    assert (
        expect(client.patch(f"{V3}/repos/{owner}/renamed", json={"archived": False}), 200)["archived"]
        is False
    )
    assert expect(client.patch(f"{V3}/repos/{owner}/renamed", json={}), 200)["name"] == "renamed"

    r = client.delete(f"{V3}/repos/{owner}/renamed")
    expect(r, 204)
    position(r)
    error_body(client.get(f"{V3}/repos/{owner}/renamed"), 404)
    error_body(client.delete(f"{V3}/repos/{owner}/renamed"), 404)
    error_body(client.patch(f"{V3}/repos/{owner}/renamed", json={"description": "x"}), 404)


def test_repo_validation(node: ApiNode, admin: httpx.Client) -> None:
    owner, client = user(node, admin)
    expect(
        client.post(f"{V3}/user/repos", json={"name": "taken", "extra_field": True, "auto_init": True}), 201
    )
    errors = validation_errors(client.post(f"{V3}/user/repos", json={"name": "TAKEN"}))
    assert errors[0] == {
        "resource": "Repository",
        "code": "already_exists",
        "field": "name",
        "message": errors[0]["message"],
    }
    errors = validation_errors(client.post(f"{V3}/user/repos", json={"name": "bad name!"}))
    assert (errors[0]["field"], errors[0]["code"]) == ("name", "invalid")
    errors = validation_errors(client.post(f"{V3}/user/repos", json={"name": "x.git"}))
    assert errors[0]["field"] == "name"
    errors = validation_errors(client.post(f"{V3}/user/repos", json={}))
    assert (errors[0]["field"], errors[0]["code"]) == ("name", "missing_field")
    errors = validation_errors(client.post(f"{V3}/user/repos", json={"name": "v", "visibility": "internal"}))
    assert errors[0]["field"] == "visibility"
    errors = validation_errors(
        client.post(f"{V3}/user/repos", json={"name": "v", "visibility": "public", "private": True})
    )
    assert errors[0]["field"] == "visibility"
    errors = validation_errors(client.post(f"{V3}/user/repos", json={"name": "v", "private": "yes"}))
    assert errors[0]["field"] == "private"
    errors = validation_errors(client.post(f"{V3}/user/repos", json={"name": "v", "default_branch": "a..b"}))
    assert errors[0]["field"] == "default_branch"
    expect(client.post(f"{V3}/user/repos", json={"name": "other"}), 201)
    errors = validation_errors(client.patch(f"{V3}/repos/{owner}/other", json={"name": "taken"}))
    assert errors[0]["code"] == "already_exists"
    errors = validation_errors(client.patch(f"{V3}/repos/{owner}/other", json={"archived": "no"}))
    assert errors[0]["field"] == "archived"
    private = expect(client.post(f"{V3}/user/repos", json={"name": "hidden", "visibility": "private"}), 201)
    assert private["private"] is True and private["visibility"] == "private"


def test_org_repos(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    owner, owner_client = user(node, admin)
    member, member_client = user(node, admin)
    _, stranger_client = user(node, admin)
    org = unique("org")
    expect(admin.post(f"{V3}/admin/organizations", json={"login": org, "admin": owner}), 201)
    expect(owner_client.put(f"{V3}/orgs/{org}/memberships/{member}"), 200)

    r = member_client.post(f"{V3}/orgs/{org}/repos", json={"name": "tool", "private": True})
    repo = expect(r, 201)
    position(r)
    check_repo(repo, f"{org}/tool", node, private=True)
    assert repo["owner"]["type"] == "Organization" and repo["organization"]["login"] == org
    assert repo["permissions"]["admin"] is True  # a member who creates a repo administers it
    expect(owner_client.post(f"{V3}/orgs/{org}/repos", json={"name": "site"}), 201)

    error_body(owner_client.post(f"{V3}/orgs/ghost-org/repos", json={"name": "x"}), 404)
    error_body(owner_client.post(f"{V3}/orgs/{owner}/repos", json={"name": "x"}), 404)
    error_body(stranger_client.post(f"{V3}/orgs/{org}/repos", json={"name": "x"}), 403)

    def names(client: httpx.Client) -> list[str]:
        listed = expect(client.get(f"{V3}/orgs/{org}/repos"), 200)
        return [r["name"] for r in listed]

    assert names(anon) == ["site"]
    assert names(stranger_client) == ["site"]
    assert names(member_client) == ["site", "tool"]
    assert names(owner_client) == ["site", "tool"]
    listed = expect(anon.get(f"{V3}/orgs/{org}/repos"), 200)
    assert "permissions" not in listed[0]
    listed = expect(stranger_client.get(f"{V3}/orgs/{org}/repos"), 200)
    assert listed[0]["permissions"] == {
        "admin": False,
        "maintain": False,
        "push": False,
        "triage": False,
        "pull": True,
    }
    error_body(anon.get(f"{V3}/orgs/ghost-org/repos"), 404)
    mine = expect(member_client.get(f"{V3}/user/repos"), 200)
    assert {r["full_name"] for r in mine} == {f"{org}/site", f"{org}/tool"}


def _links(response: httpx.Response) -> dict[str, dict[str, str]]:
    """rel -> query parameters of each `Link` entry."""
    header = response.headers.get("Link")
    if header is None:
        return {}
    out: dict[str, dict[str, str]] = {}
    for part in header.split(","):
        url, rel = re.fullmatch(r'\s*<([^>]+)>;\s*rel="(\w+)"\s*', part).groups()  # type: ignore[union-attr]
        out[rel] = dict(httpx.URL(url).params)
    return out


def test_pagination(node: ApiNode, admin: httpx.Client) -> None:
    owner, client = user(node, admin)
    for i in range(5):
        expect(client.post(f"{V3}/user/repos", json={"name": f"r{i}", "private": i % 2 == 0}), 201)

    first = client.get(f"{V3}/user/repos", params={"per_page": 2})
    assert len(expect(first, 200)) == 2
    links = _links(first)
    assert set(links) == {"next", "last"}
    assert links["next"] == {"page": "2", "per_page": "2"} and links["last"]["page"] == "3"

    second = client.get(f"{V3}/user/repos", params={"per_page": 2, "page": 2})
    assert len(expect(second, 200)) == 2
    assert {rel: q["page"] for rel, q in _links(second).items()} == {
        "next": "3",
        "last": "3",
        "first": "1",
        "prev": "1",
    }
    third = client.get(f"{V3}/user/repos", params={"per_page": 2, "page": 3})
    assert len(expect(third, 200)) == 1
    assert set(_links(third)) == {"first", "prev"}
    names = [r["name"] for page in (first, second, third) for r in page.json()]
    assert sorted(names) == [f"r{i}" for i in range(5)]
    everything = client.get(f"{V3}/user/repos", params={"per_page": 100})
    assert len(expect(everything, 200)) == 5 and "Link" not in everything.headers
    assert all(r["permissions"]["admin"] for r in everything.json())
    assert {r["private"] for r in everything.json()} == {True, False}
    beyond = client.get(f"{V3}/user/repos", params={"per_page": 2, "page": 9})
    assert expect(beyond, 200) == []
    error_body(client.get(f"{V3}/user/repos", params={"per_page": 0}), 422)
    errors = validation_errors(client.get(f"{V3}/user/repos", params={"page": "x"}))
    assert errors[0]["field"] == "page"

    # Organizations page the same way.
    org = unique("org")
    expect(admin.post(f"{V3}/admin/organizations", json={"login": org, "admin": owner}), 201)
    for i in range(3):
        expect(client.post(f"{V3}/orgs/{org}/repos", json={"name": f"o{i}"}), 201)
    page = node.client().get(f"{V3}/orgs/{org}/repos", params={"per_page": 2})
    assert [r["name"] for r in expect(page, 200)] == ["o0", "o1"]
    assert _links(page)["last"]["page"] == "2"


def test_collaborators(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    owner, client = user(node, admin)
    friend, friend_client = user(node, admin)
    expect(client.post(f"{V3}/user/repos", json={"name": "shared", "private": True}), 201)
    base = f"{V3}/repos/{owner}/shared/collaborators"

    r = client.put(f"{base}/{friend}")  # GitHub's default: push
    invitation = expect(r, 201)
    position(r)
    assert isinstance(invitation["id"], int)
    assert invitation["permissions"] == "write"
    assert invitation["invitee"]["login"] == friend and invitation["inviter"]["login"] == owner
    assert invitation["repository"]["full_name"] == f"{owner}/shared"
    assert invitation["expired"] is False and ISO.match(invitation["created_at"])
    r = client.put(f"{base}/{friend}", json={"permission": "write"})
    expect(r, 204)  # unchanged
    position(r)

    def permission_of(login: str, viewer: httpx.Client = client) -> tuple[str, str]:
        body = expect(viewer.get(f"{base}/{login}/permission"), 200)
        assert body["user"]["login"] == login
        assert body["user"]["role_name"] == body["role_name"]
        assert set(body["user"]["permissions"]) == {"admin", "maintain", "push", "triage", "pull"}
        return body["permission"], body["role_name"]

    assert permission_of(friend) == ("write", "write")
    assert permission_of(owner, friend_client) == ("admin", "admin")
    for github, legacy, role, status in (
        ("maintain", "write", "maintain", 201),
        ("triage", "read", "triage", 201),
        ("pull", "read", "read", 201),
        ("read", "read", "read", 204),  # pull and read are the same level
        ("admin", "admin", "admin", 201),
        ("push", "write", "write", 201),
    ):
        expect(client.put(f"{base}/{friend}", json={"permission": github}), status)
        assert permission_of(friend) == (legacy, role), github

    errors = validation_errors(client.put(f"{base}/{friend}", json={"permission": "owner"}))
    assert errors[0]["field"] == "permission"
    errors = validation_errors(client.put(f"{base}/{owner}"))
    assert errors[0]["code"] == "custom"  # the owner cannot be a collaborator
    error_body(client.put(f"{base}/ghost-user"), 404)
    error_body(client.get(f"{base}/ghost-user/permission"), 404)

    r = client.delete(f"{base}/{friend}")
    expect(r, 204)
    position(r)
    assert permission_of(friend) == ("none", "none")
    error_body(client.delete(f"{base}/{friend}"), 404)
    error_body(friend_client.get(f"{base}/{owner}/permission"), 404)  # private: hidden again
    error_body(anon.get(f"{base}/{owner}/permission"), 404)

    # A public repository: everyone reads it, so everyone has "read".
    expect(client.post(f"{V3}/user/repos", json={"name": "open"}), 201)
    body = expect(anon.get(f"{V3}/repos/{owner}/open/collaborators/{friend}/permission"), 200)
    assert (body["permission"], body["role_name"]) == ("read", "read")


# -- log positions -------------------------------------------------------------------------


def test_positions(node: ApiNode, admin: httpx.Client, anon: httpx.Client) -> None:
    r = admin.post(f"{V3}/admin/users", json={"login": unique("pos"), "email": "pos@example.com"})
    expect(r, 201)
    written = position(r)
    read = anon.get(f"{V3}/users/{ADMIN_LOGIN}", params={"min_position": written})
    assert position(read) >= written

    target = written + 3  # an idle chain still makes a few blocks a second
    started = time.monotonic()
    r = anon.get(f"{V3}/orgs/no-such-org", headers={"X-Stele-Min-Position": str(target)})
    error_body(r, 404)
    assert position(r) >= target
    assert time.monotonic() - started < 9
    r = anon.get(f"{V3}/users/{ADMIN_LOGIN}", params={"min_position": target + 2})
    assert position(r) >= target + 2

    errors = validation_errors(anon.get(f"{V3}/users/{ADMIN_LOGIN}", params={"min_position": "soon"}))
    assert errors[0]["field"] == "min_position" and errors[0]["resource"] == "Request"
    validation_errors(anon.get(f"{V3}/users/{ADMIN_LOGIN}", headers={"X-Stele-Min-Position": "-1"}))

    # Rejected commands that reached the log carry their position too.
    login, client = user(node, admin)
    expect(client.post(f"{V3}/user/repos", json={"name": "p"}), 201)
    r = client.post(f"{V3}/user/repos", json={"name": "p"})
    validation_errors(r)
    position(r)
