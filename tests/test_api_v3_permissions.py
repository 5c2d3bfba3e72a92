"""Permission matrix of the GitHub-compatible API: every route, every kind of caller.

The world (one real node for the module):
- `boss` owns the user repositories `boss/secret` (private) and `boss/public`, and is the
  owner of organization `acme` (team `devs`, repositories `acme/opriv` private, `acme/opub`);
- `reader` and `writer` are direct collaborators (pull / push) on secret, public and opriv;
- `member` is a plain member of `acme`; `stranger` has no relation to anything;
- `revoked` holds a token that was revoked; `admin` is the site administrator.

Expected statuses follow GitHub: 401 without (valid) credentials, 404 (never 403) for a
private repository the caller cannot read, 403 for what they can see but not change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.api_node import ApiNode, create_user, expect, start_api_node

pytestmark = pytest.mark.timeout(120)

V3 = "/api/v3"
CALLERS = ("anonymous", "revoked", "stranger", "reader", "writer", "owner", "member", "site_admin")
LOGINS = {
    "revoked": "revoked",
    "stranger": "stranger",
    "reader": "reader",
    "writer": "writer",
    "owner": "boss",
    "member": "member",
    "site_admin": "admin",
}


@dataclass
class World:
    node: ApiNode
    clients: dict[str, httpx.Client]

    @property
    def boss(self) -> httpx.Client:
        return self.clients["owner"]

    @property
    def admin(self) -> httpx.Client:
        return self.clients["site_admin"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    node = start_api_node(tmp_path_factory.mktemp("api-v3-perms"))
    try:
        admin = node.client(node.admin_token)
        clients = {"anonymous": node.client(), "site_admin": admin}
        for caller, login in LOGINS.items():
            if caller != "site_admin":
                clients[caller] = node.client(create_user(admin, login))
        for extra in ("guest", "joiner"):
            create_user(admin, extra)
        expect(admin.delete(f"{V3}/admin/users/revoked/authorizations"), 204)
        boss = clients["owner"]
        expect(admin.post(f"{V3}/admin/organizations", json={"login": "acme", "admin": "boss"}), 201)
        expect(boss.put(f"{V3}/orgs/acme/memberships/member", json={"role": "member"}), 200)
        expect(boss.post(f"{V3}/orgs/acme/teams", json={"name": "devs"}), 201)
        expect(boss.post(f"{V3}/user/repos", json={"name": "secret", "private": True}), 201)
        expect(boss.post(f"{V3}/user/repos", json={"name": "public"}), 201)
        expect(boss.post(f"{V3}/orgs/acme/repos", json={"name": "opriv", "private": True}), 201)
        expect(boss.post(f"{V3}/orgs/acme/repos", json={"name": "opub"}), 201)
        for repo in ("boss/secret", "boss/public", "acme/opriv"):
            grant(boss, repo)
        yield World(node, clients)
    finally:
        node.stop()


def grant(boss: httpx.Client, repo: str) -> None:
    """reader gets pull and writer push on `repo` (as direct collaborators)."""
    for login, permission in (("reader", "pull"), ("writer", "push")):
        r = boss.put(f"{V3}/repos/{repo}/collaborators/{login}", json={"permission": permission})
        assert r.status_code in (201, 204), r.text


# -- the routes ----------------------------------------------------------------------------

Call = Callable[[World, str, httpx.Client], httpx.Response]


def _slug(caller: str) -> str:
    return caller.replace("_", "-")  # logins allow no underscores


def create_user_route(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.post(f"{V3}/admin/users", json={"login": f"made-{_slug(caller)}", "email": "m@example.com"})


def create_token(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.post(f"{V3}/admin/users/guest/authorizations", json={"scopes": ["repo"]})


def revoke_tokens(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.delete(f"{V3}/admin/users/guest/authorizations")


def get_self(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/user")


def get_user(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/users/boss")


def create_org(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.post(f"{V3}/admin/organizations", json={"login": f"org-{_slug(caller)}", "admin": "boss"})


def get_org(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/orgs/acme")


def set_org_membership(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.put(f"{V3}/orgs/acme/memberships/joiner", json={"role": "member"})


def remove_org_membership(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    expect(w.admin.put(f"{V3}/orgs/acme/memberships/joiner", json={"role": "member"}), 200)
    return c.delete(f"{V3}/orgs/acme/memberships/joiner")


def create_team(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.post(f"{V3}/orgs/acme/teams", json={"name": f"team-{caller}"})


def set_team_membership(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.put(f"{V3}/orgs/acme/teams/devs/memberships/member", json={"role": "member"})


def set_team_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.put(f"{V3}/orgs/acme/teams/devs/repos/acme/opriv", json={"permission": "pull"})


def create_user_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.post(f"{V3}/user/repos", json={"name": f"mine-{caller}", "private": True})


def create_org_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.post(f"{V3}/orgs/acme/repos", json={"name": f"made-by-{caller}", "private": True})


def get_private_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/repos/boss/secret")


def get_public_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/repos/boss/public")


def get_private_org_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/repos/acme/opriv")


def update_private_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.patch(f"{V3}/repos/boss/secret", json={"description": f"edited by {caller}"})


def update_public_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.patch(f"{V3}/repos/boss/public", json={"description": f"edited by {caller}"})


def update_private_org_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.patch(f"{V3}/repos/acme/opriv", json={"description": f"edited by {caller}"})


def delete_private_repo(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    expect(w.boss.post(f"{V3}/user/repos", json={"name": f"doomed-{caller}", "private": True}), 201)
    grant(w.boss, f"boss/doomed-{caller}")
    return c.delete(f"{V3}/repos/boss/doomed-{caller}")


def list_user_repos(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/user/repos")


def list_org_repos(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/orgs/acme/repos")


def add_collaborator(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    r = w.boss.delete(f"{V3}/repos/boss/secret/collaborators/guest")
    assert r.status_code in (204, 404), r.text
    return c.put(f"{V3}/repos/boss/secret/collaborators/guest", json={"permission": "pull"})


def remove_collaborator(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    r = w.boss.put(f"{V3}/repos/boss/secret/collaborators/guest", json={"permission": "pull"})
    assert r.status_code in (201, 204), r.text
    return c.delete(f"{V3}/repos/boss/secret/collaborators/guest")


def private_permission(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/repos/boss/secret/collaborators/reader/permission")


def public_permission(w: World, caller: str, c: httpx.Client) -> httpx.Response:
    return c.get(f"{V3}/repos/boss/public/collaborators/reader/permission")


#                    anonymous revoked stranger reader writer owner member site_admin
ONLY_SITE_ADMIN = (401, 401, 403, 403, 403, 403, 403)
EVERYONE = (200, 401, 200, 200, 200, 200, 200, 200)
SIGNED_IN = (401, 401, 200, 200, 200, 200, 200, 200)

MATRIX: dict[str, tuple[Call, tuple[int, ...]]] = {
    "POST /admin/users": (create_user_route, (*ONLY_SITE_ADMIN, 201)),
    "POST /admin/users/{login}/authorizations": (create_token, (*ONLY_SITE_ADMIN, 201)),
    "DELETE /admin/users/{login}/authorizations": (revoke_tokens, (*ONLY_SITE_ADMIN, 204)),
    "GET /user": (get_self, SIGNED_IN),
    "GET /users/{login}": (get_user, EVERYONE),
    "POST /admin/organizations": (create_org, (*ONLY_SITE_ADMIN, 201)),
    "GET /orgs/{org}": (get_org, EVERYONE),
    "PUT /orgs/{org}/memberships/{user}": (set_org_membership, (401, 401, 403, 403, 403, 200, 403, 200)),
    "DELETE /orgs/{org}/memberships/{user}": (
        remove_org_membership,
        (401, 401, 403, 403, 403, 204, 403, 204),
    ),
    "POST /orgs/{org}/teams": (create_team, (401, 401, 403, 403, 403, 201, 403, 201)),
    "PUT /orgs/{org}/teams/{slug}/memberships/{user}": (
        set_team_membership,
        (401, 401, 403, 403, 403, 200, 403, 200),
    ),
    # The team route needs the (private) repo to be visible first: 404 for the stranger.
    "PUT /orgs/{org}/teams/{slug}/repos/{owner}/{repo}": (
        set_team_repo,
        (401, 401, 404, 403, 403, 204, 403, 204),
    ),
    "POST /user/repos": (create_user_repo, (401, 401, 201, 201, 201, 201, 201, 201)),
    "POST /orgs/{org}/repos": (create_org_repo, (401, 401, 403, 403, 403, 201, 201, 201)),
    "GET /repos/{owner}/{repo} (private)": (get_private_repo, (404, 401, 404, 200, 200, 200, 404, 200)),
    "GET /repos/{owner}/{repo} (public)": (get_public_repo, EVERYONE),
    "GET /repos/{owner}/{repo} (private, org)": (
        get_private_org_repo,
        (404, 401, 404, 200, 200, 200, 200, 200),
    ),
    "PATCH /repos/{owner}/{repo} (private)": (update_private_repo, (401, 401, 404, 403, 403, 200, 404, 200)),
    "PATCH /repos/{owner}/{repo} (public)": (update_public_repo, (401, 401, 403, 403, 403, 200, 403, 200)),
    "PATCH /repos/{owner}/{repo} (private, org)": (
        update_private_org_repo,
        (401, 401, 404, 403, 403, 200, 403, 200),
    ),
    "DELETE /repos/{owner}/{repo} (private)": (delete_private_repo, (401, 401, 404, 403, 403, 204, 404, 204)),
    "GET /user/repos": (list_user_repos, SIGNED_IN),
    "GET /orgs/{org}/repos": (list_org_repos, EVERYONE),
    "PUT /repos/{owner}/{repo}/collaborators/{user}": (
        add_collaborator,
        (401, 401, 404, 403, 403, 201, 404, 201),
    ),
    "DELETE /repos/{owner}/{repo}/collaborators/{user}": (
        remove_collaborator,
        (401, 401, 404, 403, 403, 204, 404, 204),
    ),
    "GET /repos/{owner}/{repo}/collaborators/{user}/permission (private)": (
        private_permission,
        (404, 401, 404, 200, 200, 200, 404, 200),
    ),
    "GET /repos/{owner}/{repo}/collaborators/{user}/permission (public)": (public_permission, EVERYONE),
}


def _cases() -> list[pytest.ParameterSet]:
    cases = []
    for route, (_, statuses) in MATRIX.items():
        assert len(statuses) == len(CALLERS), route
        for caller, status in zip(CALLERS, statuses, strict=True):
            cases.append(pytest.param(route, caller, status, id=f"{route} | {caller}"))
    return cases


@pytest.mark.parametrize(("route", "caller", "status"), _cases())
def test_permission_matrix(world: World, route: str, caller: str, status: int) -> None:
    call, _ = MATRIX[route]
    response = call(world, caller, world.clients[caller])
    body = expect(response, status)
    if status >= 400:
        assert isinstance(body, dict) and "message" in body and "documentation_url" in body
        if caller == "revoked":
            assert body["message"] == "Bad credentials"
        elif status == 401:
            assert body["message"] == "Requires authentication"
        if status == 404 and route.startswith("GET"):
            assert body["message"] == "Not Found"


# Which repositories each caller sees in the listings (private ones only with access).
ORG_LISTING = {
    "anonymous": {"opub"},
    "stranger": {"opub"},
    "reader": {"opub", "opriv"},
    "writer": {"opub", "opriv"},
    "owner": {"opub", "opriv"},
    "member": {"opub", "opriv"},
    "site_admin": {"opub", "opriv"},
}


@pytest.mark.parametrize(("caller", "visible"), sorted(ORG_LISTING.items()))
def test_org_listing_visibility(world: World, caller: str, visible: set[str]) -> None:
    listed = expect(world.clients[caller].get(f"{V3}/orgs/acme/repos", params={"per_page": 100}), 200)
    names = {r["name"] for r in listed}
    assert visible <= names
    assert ("opriv" in names) == ("opriv" in visible)
    for repo in listed:
        assert ("permissions" in repo) == (caller != "anonymous")


# Whether boss/secret is among GET /user/repos (site admins have admin on every repository).
USER_LISTING = {
    "stranger": False,
    "reader": True,
    "writer": True,
    "owner": True,
    "member": False,
    "site_admin": True,
}


@pytest.mark.parametrize(("caller", "sees_secret"), sorted(USER_LISTING.items()))
def test_user_listing_visibility(world: World, caller: str, sees_secret: bool) -> None:
    listed = expect(world.clients[caller].get(f"{V3}/user/repos", params={"per_page": 100}), 200)
    names = {r["full_name"] for r in listed}
    assert ("boss/secret" in names) == sees_secret
    assert "boss/public" in names or caller in ("stranger", "member")


def test_collaborator_may_leave(world: World) -> None:
    """A collaborator removes themself without admin rights; then the private repo is hidden."""
    expect(world.boss.post(f"{V3}/user/repos", json={"name": "leaving", "private": True}), 201)
    grant(world.boss, "boss/leaving")
    reader = world.clients["reader"]
    expect(reader.get(f"{V3}/repos/boss/leaving"), 200)
    expect(reader.delete(f"{V3}/repos/boss/leaving/collaborators/reader"), 204)
    expect(reader.get(f"{V3}/repos/boss/leaving"), 404)


def test_permission_levels_in_repo_objects(world: World) -> None:
    """The `permissions` object of GET /repos matches each caller's effective level."""
    expected = {
        "reader": {"admin": False, "maintain": False, "push": False, "triage": False, "pull": True},
        "writer": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
        "owner": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
        "site_admin": {"admin": True, "maintain": True, "push": True, "triage": True, "pull": True},
    }
    for caller, perms in expected.items():
        assert expect(world.clients[caller].get(f"{V3}/repos/boss/secret"), 200)["permissions"] == perms
    member = expect(world.clients["member"].get(f"{V3}/repos/acme/opriv"), 200)
    assert member["permissions"]["pull"] is True and member["permissions"]["push"] is False
