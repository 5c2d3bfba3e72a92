"""GitHub's REST object shapes (users, organizations, teams, repositories, memberships).

The functions take read-model rows (plain dicts) and the viewer's context and return
JSON-ready dicts with GitHub's field names. GitHub's ids are integers: ours are UUIDs,
so `gh_id` derives a stable 48-bit integer from one (safe in JavaScript) and the UUID
itself goes into `node_id`. Timestamps are ISO-8601 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
Fields GitHub has and Stele does not track (followers, stars, forks, ...) get GitHub's
values for "none": 0, empty, null or false.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.permissions import ADMIN, MAINTAIN, READ, TRIAGE, WRITE, rank

Json = dict[str, Any]

#: GitHub's names for the permission levels in request bodies and `permissions` objects.
GITHUB_TO_LEDGER_PERMISSION = {
    "pull": READ,
    "read": READ,
    "triage": TRIAGE,
    "push": WRITE,
    "write": WRITE,
    "maintain": MAINTAIN,
    "admin": ADMIN,
}


def gh_id(uuid_or_hex: str) -> int:
    """A stable positive integer id from a UUID (or any hex id): its first 48 bits."""
    return int(uuid_or_hex.replace("-", "")[:12], 16)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Urls:
    """URL builders from the request's base URL (`http://host:port`)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.api = f"{self.base}/api/v3"

    def user(self, login: str) -> str:
        return f"{self.api}/users/{login}"

    def org(self, login: str) -> str:
        return f"{self.api}/orgs/{login}"

    def repo(self, full_name: str) -> str:
        return f"{self.api}/repos/{full_name}"

    def team(self, org: str, slug: str) -> str:
        return f"{self.api}/orgs/{org}/teams/{slug}"


# -- users -------------------------------------------------------------------------------


def simple_user(urls: Urls, login: str, user_id: str, *, site_admin: bool, kind: str = "User") -> Json:
    url = urls.user(login)
    return {
        "login": login,
        "id": gh_id(user_id),
        "node_id": user_id,
        "avatar_url": "",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{urls.base}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "site_admin": site_admin,
    }


def user_simple(urls: Urls, row: Json) -> Json:
    """A users read-model row as GitHub's simple user."""
    return simple_user(urls, row["login"], row["user_id"], site_admin=bool(row["site_admin"]))


def user_full(urls: Urls, row: Json, *, public_repos: int, show_email: bool) -> Json:
    """GitHub's public user (GET /users/{login}); the email only when `show_email`."""
    return {
        **user_simple(urls, row),
        "name": None,
        "company": None,
        "blog": "",
        "location": None,
        "email": row["email"] if show_email else None,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": iso(row["created_at_ms"]),
        "updated_at": iso(row["updated_at_ms"]),
    }


def user_private(urls: Urls, row: Json, *, public_repos: int, private_repos: int) -> Json:
    """GitHub's private user (GET /user): the public one with the email and private counts."""
    return {
        **user_full(urls, row, public_repos=public_repos, show_email=True),
        "private_gists": 0,
        "total_private_repos": private_repos,
        "owned_private_repos": private_repos,
        "disk_usage": 0,
        "collaborators": 0,
        "two_factor_authentication": False,
    }


# -- organizations and teams -------------------------------------------------------------


def org_simple(urls: Urls, row: Json) -> Json:
    login = row["login"]
    url = urls.org(login)
    return {
        "login": login,
        "id": gh_id(row["org_id"]),
        "node_id": row["org_id"],
        "url": url,
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events",
        "hooks_url": f"{url}/hooks",
        "issues_url": f"{url}/issues",
        "members_url": f"{url}/members{{/member}}",
        "public_members_url": f"{url}/public_members{{/member}}",
        "avatar_url": "",
        "description": None,
    }


def org_full(urls: Urls, row: Json, *, public_repos: int) -> Json:
    created = iso(row["created_at_ms"])
    return {
        **org_simple(urls, row),
        "name": None,
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "twitter_username": None,
        "is_verified": False,
        "has_organization_projects": False,
        "has_repository_projects": False,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "html_url": f"{urls.base}/{row['login']}",
        "created_at": created,
        "updated_at": created,
        "type": "Organization",
    }


def org_as_user(urls: Urls, row: Json, *, public_repos: int) -> Json:
    """An organization as GET /users/{login} shows it (type "Organization")."""
    created = iso(row["created_at_ms"])
    return {
        **simple_user(urls, row["login"], row["org_id"], site_admin=False, kind="Organization"),
        "name": None,
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "public_repos": public_repos,
        "public_gists": 0,
        "followers": 0,
        "following": 0,
        "created_at": created,
        "updated_at": created,
    }


def org_membership(urls: Urls, org_row: Json, user_row: Json, ledger_role: str) -> Json:
    """GitHub's org membership; the ledger's "owner" is GitHub's "admin" here."""
    org = org_simple(urls, org_row)
    return {
        "url": f"{org['url']}/memberships/{user_row['login']}",
        "state": "active",
        "role": "admin" if ledger_role == "owner" else "member",
        "organization_url": org["url"],
        "organization": org,
        "user": user_simple(urls, user_row),
    }


def team(urls: Urls, row: Json, org_row: Json, *, members: int, repos: int, org_public_repos: int) -> Json:
    url = urls.team(org_row["login"], row["slug"])
    created = iso(row["created_at_ms"])
    return {
        "id": gh_id(row["team_id"]),
        "node_id": row["team_id"],
        "url": url,
        "html_url": f"{urls.base}/orgs/{org_row['login']}/teams/{row['slug']}",
        "name": row["name"],
        "slug": row["slug"],
        "description": row["description"] or None,
        "privacy": row["privacy"],
        "notification_setting": "notifications_enabled",
        "permission": "pull",
        "members_url": f"{url}/members{{/member}}",
        "repositories_url": f"{url}/repos",
        "parent": None,
        "members_count": members,
        "repos_count": repos,
        "created_at": created,
        "updated_at": created,
        "organization": org_full(urls, org_row, public_repos=org_public_repos),
    }


def team_membership(urls: Urls, org: str, slug: str, login: str, role: str) -> Json:
    return {"url": f"{urls.team(org, slug)}/memberships/{login}", "role": role, "state": "active"}


# -- repositories ------------------------------------------------------------------------


def permissions(level: str | None) -> Json:
    """GitHub's `permissions` object for an effective level (None: no access)."""
    have = -1 if level is None else rank(level)
    return {
        "admin": have >= rank(ADMIN),
        "maintain": have >= rank(MAINTAIN),
        "push": have >= rank(WRITE),
        "triage": have >= rank(TRIAGE),
        "pull": have >= rank(READ),
    }


def legacy_permission(level: str | None) -> str:
    """GitHub's legacy `permission` (admin|write|read|none): maintain counts as write, triage as read."""
    if level is None:
        return "none"
    if level == ADMIN:
        return "admin"
    return "write" if rank(level) >= rank(WRITE) else "read"


def repo(urls: Urls, row: Json, owner: Json, *, level: str | None, show_permissions: bool) -> Json:
    """GitHub's repository from a repos read-model row; `owner` is the owner's simple-user shape.

    `level` is the viewer's effective permission; GitHub leaves `permissions` out for
    anonymous requests (`show_permissions=False`).
    """
    full_name = f"{row['owner_login']}/{row['name']}"
    url = urls.repo(full_name)
    created = iso(row["created_at_ms"])
    private = bool(row["private"])
    body: Json = {
        "id": gh_id(row["repo_id"]),
        "node_id": row["repo_id"],
        "name": row["name"],
        "full_name": full_name,
        "private": private,
        "owner": owner,
        "html_url": f"{urls.base}/{full_name}",
        "description": row["description"] or None,
        "fork": False,
        "url": url,
        "forks_url": f"{url}/forks",
        "collaborators_url": f"{url}/collaborators{{/collaborator}}",
        "teams_url": f"{url}/teams",
        "hooks_url": f"{url}/hooks",
        "branches_url": f"{url}/branches{{/branch}}",
        "tags_url": f"{url}/tags",
        "pulls_url": f"{url}/pulls{{/number}}",
        "issues_url": f"{url}/issues{{/number}}",
        "git_refs_url": f"{url}/git/refs{{/sha}}",
        "clone_url": f"{urls.base}/{full_name}.git",
        "homepage": None,
        "size": 0,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": None,
        "has_issues": True,
        "has_projects": False,
        "has_downloads": False,
        "has_wiki": False,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": bool(row["archived"]),
        "disabled": False,
        "open_issues_count": 0,
        "license": None,
        "allow_forking": False,
        "is_template": False,
        "topics": [],
        "visibility": "private" if private else "public",
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": row["default_branch"],
        "created_at": created,
        "updated_at": iso(row["updated_at_ms"]),
        # Stele does not track pushes in the read models yet; GitHub shows the creation
        # time for a repository nobody pushed to.
        "pushed_at": created,
        "network_count": 0,
        "subscribers_count": 0,
    }
    if show_permissions:
        body["permissions"] = permissions(level)
    return body
