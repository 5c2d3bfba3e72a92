"""The event store records each block atomically, on SQLite and on PostgreSQL.

The PostgreSQL cases run against the server at STELE_TEST_POSTGRES_URL (default: the
local test database), each in a schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.event_store import EventStore, event_topic
from adapters.postgres_location import InvalidPostgresUrl, PostgresLocation, drop_schema
from domain.events import RecordedEvent, UserCreated

PG_URL = os.environ.get("STELE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class FakeReceipt:
    tx_id: str
    height: int
    index: int
    ok: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"tx_id": self.tx_id, "height": self.height, "index": self.index, "ok": self.ok}


def tx_id(height: int, index: int) -> str:
    return f"{height:032x}{index:032x}"


def make_block(height: int, n_events: int, n_txs: int = 2) -> tuple[list[RecordedEvent], list[FakeReceipt]]:
    """n_events UserCreated events (fresh aggregates) spread over n_txs transactions."""
    events = []
    for i in range(n_events):
        user_id = str(uuid.uuid5(uuid.NAMESPACE_OID, f"user:{height}:{i}"))
        payload = UserCreated(user_id=user_id, login=f"u{height}x{i}", email=f"u{i}@x.io", site_admin=False)
        events.append(
            RecordedEvent(
                aggregate_id=user_id,
                version=1,
                type=payload.type,
                data=payload.model_dump(),
                height=height,
                tx_id=tx_id(height, i % n_txs),
                tx_index=i % n_txs,
                event_index=i // n_txs,
                timestamp_ms=height * 1000,
                actor="",
            )
        )
    receipts = [FakeReceipt(tx_id(height, j), height, j) for j in range(n_txs)]
    return events, receipts


def app_hash(height: int) -> bytes:
    return bytes([height % 256]) * 32


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory that opens (and reopens) one isolated store; everything is closed and dropped after."""
    url = None
    if request.param == "postgres":
        url = f"{PG_URL.split('?')[0]}?schema=stele_test_{uuid.uuid4().hex[:12]}"
    opened: list[EventStore] = []

    def _open() -> EventStore:
        store = EventStore(data_dir=tmp_path, url=url)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()
    if url is not None:
        drop_schema(PostgresLocation.parse(url))


def test_append_block_records_events_receipts_and_tracking(open_store: Any) -> None:
    store = open_store()
    assert store.last_height() == 0 and store.max_position() == 0
    events, receipts = make_block(1, 5)
    store.append_block(1, events, receipts, app_hash(1))
    assert store.last_height() == 1
    assert store.app_hash(1) == app_hash(1)
    assert store.block_record(1) == {
        "height": 1,
        "app_hash": app_hash(1).hex(),
        "txs": [r.tx_id for r in receipts],
        "events": 5,
    }
    for r in receipts:
        assert store.receipt(r.tx_id) == r.to_json()
    assert store.receipt(tx_id(9, 9)) is None
    assert store.app_hash(2) is None
    assert [e for _, e in store.events_after(0, 100)] == events


def test_a_failure_mid_insert_leaves_nothing_of_the_block(open_store: Any) -> None:
    store = open_store()
    events1, receipts1 = make_block(1, 3)
    store.append_block(1, events1, receipts1, app_hash(1))
    before = store.max_position()
    events2, receipts2 = make_block(2, 4)
    # The third event reuses an (aggregate, version) already recorded: the insert fails midway.
    bad = [*events2[:2], events1[0], *events2[2:]]
    with pytest.raises(IntegrityError):
        store.append_block(2, bad, receipts2, app_hash(2))
    assert store.last_height() == 1
    assert store.app_hash(2) is None
    assert all(store.receipt(r.tx_id) is None for r in receipts2)
    assert [e for _, e in store.events_after(0, 100)] == events1
    # The good block still goes in afterwards.
    store.append_block(2, events2, receipts2, app_hash(2))
    assert store.last_height() == 2
    assert store.max_position() > before
    assert [e for _, e in store.events_after(0, 100)] == events1 + events2


def test_reappending_an_applied_height_is_a_noop(open_store: Any) -> None:
    store = open_store()
    for h in (1, 2):
        store.append_block(h, *make_block(h, 3), app_hash(h))
    position = store.max_position()
    store.append_block(2, *make_block(2, 3), app_hash(2))
    store.append_block(1, *make_block(1, 3), b"\xff" * 32)  # even with different content
    assert store.max_position() == position
    assert store.app_hash(1) == app_hash(1)
    assert len(list(store.iter_events())) == 6


def test_a_concurrent_writer_that_won_the_race_makes_the_append_a_noop(open_store: Any) -> None:
    first = open_store()
    second = open_store()
    events, receipts = make_block(1, 3)
    first.append_block(1, events, receipts, app_hash(1))
    # `second` checked the tracking height before `first` committed.
    real = second._tracked_height
    calls = iter([None])
    second._tracked_height = lambda: next(calls, real())
    second.append_block(1, events, receipts, app_hash(1))
    assert second.last_height() == 1
    assert len(second.events_after(0, 100)) == 3


def test_events_after_pages_domain_events_in_order(open_store: Any) -> None:
    store = open_store()
    expected: list[RecordedEvent] = []
    for h in range(1, 8):
        events, receipts = make_block(h, h % 4, n_txs=2)  # includes blocks with no events
        store.append_block(h, events, receipts, app_hash(h))
        expected.extend(events)
    got: list[tuple[int, RecordedEvent]] = []
    position = 0
    while page := store.events_after(position, 4):
        assert len(page) <= 4
        got.extend(page)
        position = page[-1][0]
    positions = [p for p, _ in got]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert [e for _, e in got] == expected
    assert list(store.iter_events(batch=3)) == expected
    assert store.events_after(store.max_position(), 10) == []
    assert store.events_after(0, 0) == []
    # Mid-stream pages start strictly after the given position.
    assert store.events_after(got[4][0], 2) == got[5:7]


def test_reopen_after_close_resumes(open_store: Any) -> None:
    store = open_store()
    for h in range(1, 4):
        store.append_block(h, *make_block(h, 2), app_hash(h))
    position = store.max_position()
    store.close()
    again = open_store()
    assert again.last_height() == 3
    assert again.max_position() == position
    assert again.app_hash(3) == app_hash(3)
    again.append_block(4, *make_block(4, 2), app_hash(4))
    assert again.last_height() == 4
    assert len(list(again.iter_events())) == 8


def test_aggregate_ids_that_are_not_uuids_are_stored_too(open_store: Any) -> None:
    store = open_store()
    events, receipts = make_block(1, 2)
    odd = [e.model_copy(update={"aggregate_id": f"u-{i}"}) for i, e in enumerate(events)]
    store.append_block(1, odd, receipts, app_hash(1))
    assert [e for _, e in store.events_after(0, 10)] == odd
    dup = make_block(2, 1)
    with pytest.raises(IntegrityError):  # (aggregate, version) stays unique
        store.append_block(2, [odd[0].model_copy(update={"height": 2})], dup[1], app_hash(2))


def test_height_zero_is_applied_once(open_store: Any) -> None:
    store = open_store()
    store.append_block(0, *make_block(0, 2), app_hash(0))
    assert store.has_height(0) and store.last_height() == 0
    store.append_block(0, *make_block(0, 2), app_hash(0))
    assert len(store.events_after(0, 10)) == 2


def test_sqlite_store_is_a_wal_file_in_the_data_dir(tmp_path: Path) -> None:
    store = EventStore(data_dir=tmp_path / "node")
    try:
        store.append_block(1, *make_block(1, 1), app_hash(1))
        path = tmp_path / "node" / "events.sqlite"
        assert store.path == path and path.exists()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            topics = {row[0] for row in conn.execute("SELECT DISTINCT topic FROM stored_events")}
        assert topics == {event_topic("UserCreated"), "stele.receipt", "stele.block"}
    finally:
        store.close()


def test_postgres_store_lives_in_its_own_schema(tmp_path: Path) -> None:
    import psycopg

    schema = f"stele_test_{uuid.uuid4().hex[:12]}"
    url = f"{PG_URL.split('?')[0]}?schema={schema}&prefix=node1_"
    location = PostgresLocation.parse(url)
    store = EventStore(data_dir=tmp_path, url=url)
    try:
        store.append_block(1, *make_block(1, 2), app_hash(1))
        with psycopg.connect(**location.connect_kwargs()) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
                )
            }
        assert tables == {"node1_events", "node1_tracking"}
        assert not (tmp_path / "events.sqlite").exists()
    finally:
        store.close()
        drop_schema(location)
    with psycopg.connect(**location.connect_kwargs()) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is None


def test_postgres_url_parsing() -> None:
    loc = PostgresLocation.parse("postgresql://alice:s%40cret@db.example:6543/forge?schema=node_a&prefix=x_")
    assert (loc.user, loc.password, loc.host, loc.port, loc.dbname) == (
        "alice",
        "s@cret",
        "db.example",
        6543,
        "forge",
    )
    assert (loc.schema, loc.events_table, loc.tracking_table) == ("node_a", "x_events", "x_tracking")
    assert "s@cret" not in loc.redacted()
    default = PostgresLocation.parse("postgres://db/forge")
    assert (default.port, default.schema, default.events_table) == (5432, "public", "stele_events")
    for bad in (
        "mysql://db/forge",
        "postgresql://db/",
        "postgresql://db/forge?schema=a;drop",
        "postgresql://db/forge?sslmode=require",
    ):
        with pytest.raises(InvalidPostgresUrl):
            PostgresLocation.parse(bad)
    with pytest.raises(ValueError):
        drop_schema(default)
