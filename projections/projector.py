"""Writes finalized blocks into the DuckDB read models, one transaction per block.

Each block's rows and its tracking height commit together, so after a crash the
read models are exactly those of some block boundary and resume from there; a block
at or below the tracked height is skipped. Rows are written with DuckDB appenders
(batched upserts and deletions per table), never one statement per row.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any

import duckdb

from domain.events import RecordedEvent
from projections.acl import grant_site_admins, recompute_acl
from projections.block_changes import BlockChanges, fold
from projections.schema import (
    COLUMNS,
    DATA_TABLES,
    DDL,
    KEYS,
    PROJECTION,
    SCHEMA_ROW,
    SCHEMA_VERSION,
    TRACKING_TABLE,
)

log = logging.getLogger(__name__)

READMODELS_FILE = "readmodels.duckdb"
#: Upper bound of events folded into one transaction by `rebuild` (whole blocks only).
REBUILD_CHUNK_EVENTS = 20_000

_WRITE_ORDER = (
    "users",
    "orgs",
    "teams",
    "repos",
    "org_members",
    "team_members",
    "team_repos",
    "collaborators",
)


class Projector:
    """Owner of the read-model database: applies blocks, rebuilds, and lends cursors to readers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._root = duckdb.connect(str(path))
        self._cursor_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer = self.cursor()
        self._ensure_schema()
        self._height = self._read_tracking()

    # -- connections ---------------------------------------------------------------------

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new connection to the same database (own transaction context; one per thread)."""
        with self._cursor_lock:
            return self._root.cursor()

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The root connection: only for handing to `ReadModels`, which takes cursors from it."""
        return self._root

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
            self._root.close()

    # -- schema and tracking -------------------------------------------------------------

    def _ensure_schema(self) -> None:
        cur = self._writer
        existing = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        stale = False
        if TRACKING_TABLE in existing:
            found = cur.execute(
                f"SELECT height FROM {TRACKING_TABLE} WHERE name = ?", [SCHEMA_ROW]
            ).fetchone()
            if found is None or found[0] != SCHEMA_VERSION:
                log.warning("read models have schema %s, want %s: dropping them", found, SCHEMA_VERSION)
                stale = True
        self._create_tables(drop_first=stale)

    def _create_tables(self, *, drop_first: bool) -> None:
        """Create missing tables (after dropping all, if asked) in one transaction, so
        readers see either the old tables or the new empty ones, never none."""
        cur = self._writer
        cur.execute("BEGIN")
        try:
            if drop_first:
                for table in (*DATA_TABLES, TRACKING_TABLE):
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
            for statement in DDL:
                cur.execute(statement)
            cur.execute(
                f"INSERT OR REPLACE INTO {TRACKING_TABLE} VALUES (?, ?)", [SCHEMA_ROW, SCHEMA_VERSION]
            )
            # -1: nothing applied yet (height 0 is a real block).
            cur.execute(f"INSERT OR IGNORE INTO {TRACKING_TABLE} VALUES (?, -1)", [PROJECTION])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def _read_tracking(self) -> int | None:
        row = self._writer.execute(
            f"SELECT height FROM {TRACKING_TABLE} WHERE name = ?", [PROJECTION]
        ).fetchone()
        return None if row is None or row[0] < 0 else int(row[0])

    def height(self) -> int:
        """The last applied height, 0 if none."""
        return self._height or 0

    def has_height(self, height: int) -> bool:
        return self._height is not None and self._height >= height

    # -- applying ------------------------------------------------------------------------

    def apply_block(self, height: int, events: Sequence[RecordedEvent]) -> None:
        """Apply one finalized block atomically; a height already applied is skipped."""
        with self._write_lock:
            if self._height is not None and height <= self._height:
                return
            self._apply(height, events)

    def apply_blocks(self, blocks: Iterable[tuple[int, Sequence[RecordedEvent]]]) -> None:
        """Apply consecutive blocks (ascending heights) in ONE transaction: for catching up.

        Per-block costs (ACL queries, commit) are paid once; tracking moves to the last
        height. Heights already applied are skipped.
        """
        with self._write_lock:
            events: list[RecordedEvent] = []
            last: int | None = None
            for height, block in blocks:
                if last is not None and height <= last:
                    raise ValueError(f"blocks out of order: height {height} after {last}")
                if self._height is not None and height <= self._height:
                    continue
                events.extend(block)
                last = height
            if last is not None:
                self._apply(last, events)

    def _apply(self, height: int, events: Sequence[RecordedEvent]) -> None:
        cur = self._writer
        cur.execute("BEGIN")
        try:
            changes = fold(events, self._load_repos)
            self._write(cur, changes)
            cur.execute(f"UPDATE {TRACKING_TABLE} SET height = ? WHERE name = ?", [height, PROJECTION])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        self._height = height

    def _load_repos(self, repo_ids: Sequence[str]) -> Mapping[str, dict[str, Any]]:
        if not repo_ids:
            return {}
        cols = COLUMNS["repos"]
        rows = self._writer.execute(
            f"SELECT {', '.join(cols)} FROM repos WHERE repo_id IN (SELECT unnest(?::VARCHAR[]))",
            [list(repo_ids)],
        ).fetchall()
        return {r[0]: dict(zip(cols, r, strict=True)) for r in rows}

    def _write(self, cur: duckdb.DuckDBPyConnection, changes: BlockChanges) -> None:
        for table in _WRITE_ORDER:
            # An upsert is a delete and an insert: two appender flushes, cheaper than ON CONFLICT.
            rows = changes.upserts[table]
            gone = changes.deletes[table] | rows.keys()
            if gone:
                with cur.appender(table, action="delete", key=list(KEYS[table])) as appender:
                    appender.append_rows(sorted(gone))
            if rows:
                with cur.appender(table) as appender:
                    appender.append_rows([rows[k] for k in sorted(rows)])
        if changes.deleted_repos:
            deleted = {"repos": sorted(changes.deleted_repos)}
            for table in ("collaborators", "team_repos"):
                cur.execute(
                    f"DELETE FROM {table} WHERE repo_id IN (SELECT unnest($repos::VARCHAR[]))", deleted
                )
        if changes.touches_acl:
            grant_site_admins(cur, changes.site_admins)
            recompute_acl(cur, repos=changes.acl_repos, orgs=changes.acl_orgs, teams=changes.acl_teams)

    # -- rebuilding ----------------------------------------------------------------------

    def rebuild(
        self,
        events: Iterable[RecordedEvent],
        progress: Callable[[int], None] | None = None,
        *,
        up_to: int | None = None,
    ) -> None:
        """Drop and recreate the read models, then apply `events` (in log order) block by block.

        Consecutive blocks are folded into one transaction up to REBUILD_CHUNK_EVENTS
        events (a block is never split), so a rebuild costs few commits; `progress` is
        called with the last height of each committed chunk. Blocks without events leave
        no trace in the stream: `up_to` (e.g. the event store's last height) moves the
        tracking height past them at the end.
        """
        with self._write_lock:
            self._create_tables(drop_first=True)
            self._height = None
            chunk: list[RecordedEvent] = []
            last_height: int | None = None
            for height, block in _blocks(events):
                if chunk and len(chunk) + len(block) > REBUILD_CHUNK_EVENTS:
                    assert last_height is not None
                    self._apply(last_height, chunk)
                    if progress is not None:
                        progress(last_height)
                    chunk = []
                chunk.extend(block)
                last_height = height
            if up_to is not None and (last_height is None or up_to > last_height):
                last_height = up_to
            if last_height is not None:
                self._apply(last_height, chunk)
                if progress is not None:
                    progress(last_height)


def _blocks(events: Iterable[RecordedEvent]) -> Iterator[tuple[int, list[RecordedEvent]]]:
    """Group a log-ordered event stream by block height."""
    previous = -1
    for height, group in groupby(events, key=lambda e: e.height):
        if height < previous:
            raise ValueError(f"events out of log order: height {height} after {previous}")
        previous = height
        yield height, list(group)
