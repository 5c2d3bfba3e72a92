"""Queries over the DuckDB read models, for the API.

DuckDB allows one writing process, so the readers share the projector's database:
every call takes a fresh cursor (its own connection and transaction context), which
makes calls safe from the asyncio thread while the projector writes from another, and
each sees only committed blocks. Rows come back as plain dicts of the table columns.
"""

from __future__ import annotations

import threading
from typing import Any

import duckdb

from projections.projector import Projector
from projections.schema import COLUMNS, PROJECTION, TRACKING_TABLE

Row = dict[str, Any]

_USER_COLS = ", ".join(COLUMNS["users"])
_ORG_COLS = ", ".join(COLUMNS["orgs"])
_TEAM_COLS = ", ".join(f"t.{c}" for c in COLUMNS["teams"])
_REPO_COLS = ", ".join(f"r.{c}" for c in COLUMNS["repos"])


class ReadModels:
    """Read-only queries; `source` is the node's Projector or a DuckDB connection to share."""

    def __init__(self, source: Projector | duckdb.DuckDBPyConnection) -> None:
        self._source = source
        self._lock = threading.Lock()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if isinstance(self._source, Projector):
            return self._source.cursor()
        with self._lock:
            return self._source.cursor()

    def _all(self, sql: str, params: list[Any]) -> list[Row]:
        with self._cursor() as cur:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def _one(self, sql: str, params: list[Any]) -> Row | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    # -- position --------------------------------------------------------------------------

    def height(self) -> int:
        """The last block height the read models reflect."""
        row = self._one(f"SELECT height FROM {TRACKING_TABLE} WHERE name = ?", [PROJECTION])
        return max(int(row["height"]), 0) if row else 0

    # -- users and organizations -----------------------------------------------------------

    def get_user(self, login: str) -> Row | None:
        return self._one(f"SELECT {_USER_COLS} FROM users WHERE login_lower = lower(?)", [login])

    def get_user_by_id(self, user_id: str) -> Row | None:
        return self._one(f"SELECT {_USER_COLS} FROM users WHERE user_id = ?", [user_id])

    def get_org(self, login: str) -> Row | None:
        return self._one(f"SELECT {_ORG_COLS} FROM orgs WHERE login_lower = lower(?)", [login])

    def get_org_by_id(self, org_id: str) -> Row | None:
        return self._one(f"SELECT {_ORG_COLS} FROM orgs WHERE org_id = ?", [org_id])

    def org_members(self, org_id: str) -> list[Row]:
        """Members with their role, and their login for display, by login."""
        return self._all(
            "SELECT m.org_id, m.user_id, m.role, u.login FROM org_members m "
            "LEFT JOIN users u ON u.user_id = m.user_id WHERE m.org_id = ? "
            "ORDER BY u.login_lower, m.user_id",
            [org_id],
        )

    def get_team(self, org: str, slug: str) -> Row | None:
        """A team by its organization's login and its slug."""
        return self._one(
            f"SELECT {_TEAM_COLS} FROM teams t JOIN orgs o ON o.org_id = t.org_id "
            "WHERE o.login_lower = lower(?) AND t.slug = lower(?)",
            [org, slug],
        )

    def team_members(self, team_id: str) -> list[Row]:
        return self._all(
            "SELECT m.team_id, m.user_id, m.role, u.login FROM team_members m "
            "LEFT JOIN users u ON u.user_id = m.user_id WHERE m.team_id = ? "
            "ORDER BY u.login_lower, m.user_id",
            [team_id],
        )

    def team_repos(self, team_id: str) -> list[Row]:
        return self._all(
            "SELECT tr.team_id, tr.repo_id, tr.permission FROM team_repos tr "
            "JOIN repos r ON r.repo_id = tr.repo_id WHERE tr.team_id = ? AND NOT r.deleted "
            "ORDER BY r.name_lower, r.repo_id",
            [team_id],
        )

    # -- repositories ----------------------------------------------------------------------

    def get_repo(self, owner: str, name: str) -> Row | None:
        """A live (not deleted) repository by owner login and name, case-insensitively."""
        return self._one(
            f"SELECT {_REPO_COLS} FROM repos r "
            "WHERE lower(r.owner_login) = lower(?) AND r.name_lower = lower(?) AND NOT r.deleted",
            [owner, name],
        )

    def get_repo_by_id(self, repo_id: str, *, include_deleted: bool = False) -> Row | None:
        row = self._one(f"SELECT {_REPO_COLS} FROM repos r WHERE r.repo_id = ?", [repo_id])
        if row is None or (row["deleted"] and not include_deleted):
            return None
        return row

    def list_repos_for_owner(
        self, owner_id: str, viewer_user_id: str | None, page: int = 1, per_page: int = 30
    ) -> tuple[list[Row], int]:
        """An owner's live repositories that the viewer may see: public ones, plus private ones
        where the viewer has an ACL row or is a site admin. Rows add the viewer's `permission`."""
        where = (
            "r.owner_id = $owner AND NOT r.deleted AND (NOT r.private OR EXISTS "
            "(SELECT 1 FROM acl x WHERE x.repo_id = r.repo_id AND x.user_id = $viewer) "
            "OR EXISTS (SELECT 1 FROM users u WHERE u.user_id = $viewer AND u.site_admin))"
        )
        return self._repo_page(where, {"owner": owner_id, "viewer": viewer_user_id}, page, per_page)

    def list_repos_for_user(
        self, user_id: str, page: int = 1, per_page: int = 30, *, public_only: bool = False
    ) -> tuple[list[Row], int]:
        """Live repositories the user owns or has any ACL row on, with the user's `permission`;
        only the public ones with `public_only` (a token without the `repo` scope)."""
        where = (
            "NOT r.deleted AND (r.owner_id = $viewer OR EXISTS "
            "(SELECT 1 FROM acl x WHERE x.repo_id = r.repo_id AND x.user_id = $viewer))"
        )
        if public_only:
            where += " AND NOT r.private"
        return self._repo_page(where, {"viewer": user_id}, page, per_page)

    def _repo_page(
        self, where: str, params: dict[str, Any], page: int, per_page: int
    ) -> tuple[list[Row], int]:
        """One page (1-based) of `repos r WHERE where` by owner and name, and the total count."""
        page = max(page, 1)
        per_page = max(per_page, 1)
        with self._cursor() as cur:
            cur.execute("BEGIN")  # one snapshot for the count and the page
            try:
                found = cur.execute(f"SELECT count(*) FROM repos r WHERE {where}", params).fetchone()
                total = int(found[0]) if found else 0
                cur.execute(
                    f"SELECT {_REPO_COLS}, a.permission FROM repos r "
                    "LEFT JOIN acl a ON a.repo_id = r.repo_id AND a.user_id = $viewer "
                    f"WHERE {where} ORDER BY r.owner_login, r.name_lower, r.repo_id "
                    "LIMIT $limit OFFSET $offset",
                    {**params, "limit": per_page, "offset": (page - 1) * per_page},
                )
                names = [d[0] for d in cur.description or ()]
                rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            finally:
                cur.execute("COMMIT")
        return rows, total

    def permission(self, repo_id: str, user_id: str) -> str | None:
        """The user's effective permission from the ACL (None: no grant; public read is implicit)."""
        row = self._one("SELECT permission FROM acl WHERE repo_id = ? AND user_id = ?", [repo_id, user_id])
        return None if row is None else str(row["permission"])

    def acl(self, repo_id: str) -> list[Row]:
        return self._all(
            "SELECT repo_id, user_id, permission FROM acl WHERE repo_id = ? ORDER BY user_id", [repo_id]
        )

    def collaborators(self, repo_id: str) -> list[Row]:
        """Direct collaborators with their permission and login, by login."""
        return self._all(
            "SELECT c.repo_id, c.user_id, c.permission, u.login FROM collaborators c "
            "LEFT JOIN users u ON u.user_id = c.user_id WHERE c.repo_id = ? "
            "ORDER BY u.login_lower, c.user_id",
            [repo_id],
        )

    # -- refs and branch protection --------------------------------------------------------
