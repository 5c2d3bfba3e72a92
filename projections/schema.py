"""The DuckDB read-model tables: their DDL, column order and the schema version.

Column order here is the order rows are appended in, so the folding code and the
tables can never drift apart: both read `COLUMNS`.
"""

from __future__ import annotations

#: Bump when a table changes shape; a file with another version is dropped and rebuilt.
SCHEMA_VERSION = 3  # 2: refs, branch_protection; 3: without them (the ledger state answers)

#: The projection's name in the tracking table.
PROJECTION = "readmodels"
#: The tracking row that holds SCHEMA_VERSION.
SCHEMA_ROW = "schema_version"
TRACKING_TABLE = "projection_tracking"

COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("user_id", "login", "login_lower", "email", "site_admin", "created_at_ms", "updated_at_ms"),
    "orgs": ("org_id", "login", "login_lower", "created_at_ms"),
    "org_members": ("org_id", "user_id", "role"),
    "teams": ("team_id", "org_id", "name", "slug", "description", "privacy", "created_at_ms"),
    "team_members": ("team_id", "user_id", "role"),
    "team_repos": ("team_id", "repo_id", "permission"),
    "repos": (
        "repo_id",
        "owner_id",
        "owner_type",
        "owner_login",
        "name",
        "name_lower",
        "description",
        "private",
        "archived",
        "default_branch",
        "created_at_ms",
        "updated_at_ms",
        "deleted",
    ),
    "collaborators": ("repo_id", "user_id", "permission"),
    "acl": ("repo_id", "user_id", "permission"),
}

#: Primary key of each table (what upserts and deletes match on).
KEYS: dict[str, tuple[str, ...]] = {
    "users": ("user_id",),
    "orgs": ("org_id",),
    "org_members": ("org_id", "user_id"),
    "teams": ("team_id",),
    "team_members": ("team_id", "user_id"),
    "team_repos": ("team_id", "repo_id"),
    "repos": ("repo_id",),
    "collaborators": ("repo_id", "user_id"),
    "acl": ("repo_id", "user_id"),
}

DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR PRIMARY KEY, login VARCHAR NOT NULL, login_lower VARCHAR NOT NULL,
        email VARCHAR NOT NULL, site_admin BOOLEAN NOT NULL,
        created_at_ms BIGINT NOT NULL, updated_at_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS orgs (
        org_id VARCHAR PRIMARY KEY, login VARCHAR NOT NULL, login_lower VARCHAR NOT NULL,
        created_at_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS org_members (
        org_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, role VARCHAR NOT NULL,
        PRIMARY KEY (org_id, user_id))""",
    """CREATE TABLE IF NOT EXISTS teams (
        team_id VARCHAR PRIMARY KEY, org_id VARCHAR NOT NULL, name VARCHAR NOT NULL,
        slug VARCHAR NOT NULL, description VARCHAR NOT NULL, privacy VARCHAR NOT NULL,
        created_at_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS team_members (
        team_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, role VARCHAR NOT NULL,
        PRIMARY KEY (team_id, user_id))""",
    """CREATE TABLE IF NOT EXISTS team_repos (
        team_id VARCHAR NOT NULL, repo_id VARCHAR NOT NULL, permission VARCHAR NOT NULL,
        PRIMARY KEY (team_id, repo_id))""",
    """CREATE TABLE IF NOT EXISTS repos (
        repo_id VARCHAR PRIMARY KEY, owner_id VARCHAR NOT NULL, owner_type VARCHAR NOT NULL,
        owner_login VARCHAR NOT NULL, name VARCHAR NOT NULL, name_lower VARCHAR NOT NULL,
        description VARCHAR NOT NULL, private BOOLEAN NOT NULL, archived BOOLEAN NOT NULL,
        default_branch VARCHAR NOT NULL, created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL, deleted BOOLEAN NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS collaborators (
        repo_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, permission VARCHAR NOT NULL,
        PRIMARY KEY (repo_id, user_id))""",
    """CREATE TABLE IF NOT EXISTS acl (
        repo_id VARCHAR NOT NULL, user_id VARCHAR NOT NULL, permission VARCHAR NOT NULL,
        PRIMARY KEY (repo_id, user_id))""",
    f"""CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (
        name VARCHAR PRIMARY KEY, height BIGINT NOT NULL)""",
)

#: Tables dropped by a rebuild (everything but tracking, which a rebuild resets).
DATA_TABLES: tuple[str, ...] = tuple(COLUMNS)
