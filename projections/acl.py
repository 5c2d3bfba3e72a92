"""Effective repository permissions, recomputed in SQL for the repositories a block touched.

GitHub's rules, the same as domain.permissions: levels read < triage < write <
maintain < admin; site admins get admin everywhere; a user-owned repository's owner
gets admin; on an organization's repositories its owners get admin and its members
read (the base permission); team members get their team's permission on the team's
repositories; collaborators get theirs. The effective level is the highest grant.
Archived repositories cap everyone at read, deleted ones have no rows, and public
read access for everyone is implicit (no rows).
"""

from __future__ import annotations

from collections.abc import Collection

import duckdb

from domain.events import PERMISSION_ORDER

_LEVELS = "[" + ", ".join(f"'{p}'" for p in PERMISSION_ORDER) + "]"
_ADMIN = len(PERMISSION_ORDER)
_READ = 1


def _level(column: str) -> str:
    return f"list_position({_LEVELS}, {column})"


# Every grant, as (repo_id, user_id, level), for the repositories in $scope.
_GRANTS = f"""
    SELECT r.repo_id, r.owner_id AS user_id, {_ADMIN} AS lvl
      FROM repos r WHERE r.owner_type = 'User' AND r.repo_id IN (SELECT unnest($scope))
    UNION ALL
    SELECT r.repo_id, m.user_id, CASE WHEN m.role = 'owner' THEN {_ADMIN} ELSE {_READ} END
      FROM repos r JOIN org_members m ON m.org_id = r.owner_id
     WHERE r.owner_type = 'Organization' AND r.repo_id IN (SELECT unnest($scope))
    UNION ALL
    SELECT tr.repo_id, tm.user_id, {_level("tr.permission")}
      FROM team_repos tr JOIN team_members tm ON tm.team_id = tr.team_id
     WHERE tr.repo_id IN (SELECT unnest($scope))
    UNION ALL
    SELECT c.repo_id, c.user_id, {_level("c.permission")}
      FROM collaborators c WHERE c.repo_id IN (SELECT unnest($scope))
    UNION ALL
    SELECT r.repo_id, u.user_id, {_ADMIN}
      FROM repos r CROSS JOIN users u
     WHERE u.site_admin AND r.repo_id IN (SELECT unnest($scope))
"""

_INSERT = f"""
    INSERT INTO acl (repo_id, user_id, permission)
    SELECT g.repo_id, g.user_id,
           {_LEVELS}[CASE WHEN r.archived THEN {_READ} ELSE max(g.lvl) END]
      FROM ({_GRANTS}) g JOIN repos r ON r.repo_id = g.repo_id
     WHERE NOT r.deleted
     GROUP BY g.repo_id, g.user_id, r.archived
"""

# Repositories whose grants follow from an org's membership or a team's.
_SCOPE_OF_ORGS_AND_TEAMS = """
    SELECT repo_id FROM repos WHERE owner_id IN (SELECT unnest($orgs::VARCHAR[]))
    UNION SELECT repo_id FROM team_repos WHERE team_id IN (SELECT unnest($teams::VARCHAR[]))
"""

_SITE_ADMIN_ROWS = f"""
    INSERT INTO acl (repo_id, user_id, permission)
    SELECT r.repo_id, a.user_id, CASE WHEN r.archived THEN 'read' ELSE '{PERMISSION_ORDER[-1]}' END
      FROM repos r CROSS JOIN (SELECT unnest($admins::VARCHAR[]) AS user_id) a
     WHERE NOT r.deleted
"""


def grant_site_admins(cur: duckdb.DuckDBPyConnection, user_ids: Collection[str]) -> None:
    """Give new site admins their rows on every live repository.

    Admin is the top level, so a site admin's effective permission never depends on other
    grants: writing just their rows is the same as recomputing every repository, at a
    fraction of the cost.
    """
    if not user_ids:
        return
    params = {"admins": sorted(user_ids)}
    cur.execute("DELETE FROM acl WHERE user_id IN (SELECT unnest($admins::VARCHAR[]))", params)
    cur.execute(_SITE_ADMIN_ROWS, params)


def recompute_acl(
    cur: duckdb.DuckDBPyConnection,
    *,
    repos: Collection[str] = (),
    orgs: Collection[str] = (),
    teams: Collection[str] = (),
) -> None:
    """Replace the ACL rows of the scoped repositories (named, an org's, a team's) with fresh ones."""
    scope = set(repos)
    if orgs or teams:
        found = cur.execute(_SCOPE_OF_ORGS_AND_TEAMS, {"orgs": sorted(orgs), "teams": sorted(teams)})
        scope.update(r[0] for r in found.fetchall())
    if not scope:
        return
    params = {"scope": sorted(scope)}
    cur.execute("DELETE FROM acl WHERE repo_id IN (SELECT unnest($scope::VARCHAR[]))", params)
    cur.execute(_INSERT, params)
