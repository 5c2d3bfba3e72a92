"""Where a PostgreSQL event store lives: parsed from a `postgresql://` URL.

The URL names the server and database as usual and, in its query string, the schema
(`schema=NAME`, default `public`) and a table-name prefix (`prefix=NAME`, default
`stele_`). A schema of its own per node, or per test, keeps stores apart on one
server; `drop_schema` removes one again.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg import sql

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,47}$")
_SCHEMES = ("postgresql", "postgres")


class InvalidPostgresUrl(ValueError):
    """The URL is not a usable `postgresql://` event-store location."""


@dataclass(frozen=True)
class PostgresLocation:
    host: str
    port: int
    dbname: str
    user: str
    password: str
    schema: str = "public"
    prefix: str = "stele_"

    @property
    def events_table(self) -> str:
        return f"{self.prefix}events"

    @property
    def tracking_table(self) -> str:
        return f"{self.prefix}tracking"

    @classmethod
    def parse(cls, url: str) -> PostgresLocation:
        """`postgresql://[user[:password]@]host[:port]/dbname[?schema=NAME&prefix=NAME]`."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES:
            raise InvalidPostgresUrl(f"not a postgresql:// URL: {parts.scheme or url!r}")
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            raise InvalidPostgresUrl("the URL names no database (postgresql://host:port/DBNAME)")
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        unknown = sorted(set(query) - {"schema", "prefix"})
        if unknown:
            raise InvalidPostgresUrl(f"unknown URL parameters: {', '.join(unknown)}")
        schema = query.get("schema") or "public"
        prefix = query.get("prefix", "stele_")
        for what, value in (("schema", schema), ("prefix", prefix)):
            if value and not _IDENTIFIER.match(value):
                raise InvalidPostgresUrl(f"{what} must be a plain SQL identifier of at most 48 characters")
        try:
            port = parts.port or 5432
        except ValueError as exc:
            raise InvalidPostgresUrl(str(exc)) from None
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            dbname=dbname,
            user=unquote(parts.username) if parts.username else getpass.getuser(),
            password=unquote(parts.password) if parts.password else "",
            schema=schema,
            prefix=prefix,
        )

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "user": self.user,
        }
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def redacted(self) -> str:
        """The location for logs: never the password."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}?schema={self.schema}"


def create_schema(location: PostgresLocation) -> None:
    """Create the location's schema if it is missing (the recorders only create tables)."""
    if location.schema == "public":
        return
    with psycopg.connect(**location.connect_kwargs(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(location.schema)))


def drop_schema(location: PostgresLocation) -> None:
    """Drop the location's schema and everything in it: for tests and throwaway nodes."""
    if location.schema == "public":
        raise ValueError("refusing to drop the public schema")
    with psycopg.connect(**location.connect_kwargs(), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(location.schema)))
