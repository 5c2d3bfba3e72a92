"""The node's event store: eventsourcing's process recorders over SQLite (default) or PostgreSQL.

One block is one atomic insert: its domain events, a receipt record per transaction,
a block record (app hash, transaction ids) and the tracking position (the height), so
a crash can never leave a block half applied and re-applying a block is a no-op.
Positions are the recorder's notification ids: ascending, possibly with gaps.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID, uuid5

from eventsourcing.persistence import IntegrityError, ProcessRecorder, StoredEvent, Tracking
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder
from eventsourcing.sqlite import SQLiteDatastore, SQLiteProcessRecorder

from adapters.postgres_location import PostgresLocation, create_schema
from commands.ledger import DUPLICATE_MESSAGE
from domain.canonical import canonical_json
from domain.events import RecordedEvent

log = logging.getLogger(__name__)

#: Namespace of the ids of receipt and block records (domain aggregates use their own ids).
STORE_NAMESPACE = UUID("5a6b1d2e-7c4f-5e3a-9b8d-0c1e2f3a4b5c")
TRACKING_NAME = "stele-ledger"
EVENT_TOPIC_PREFIX = "stele.event:"
RECEIPT_TOPIC = "stele.receipt"
BLOCK_TOPIC = "stele.block"
SQLITE_FILE = "events.sqlite"


class ReceiptLike(Protocol):
    """What the store needs of a ledger receipt (commands.ledger.Receipt satisfies it)."""

    @property
    def tx_id(self) -> str: ...

    def to_json(self) -> Mapping[str, Any]: ...


def originator_id(aggregate_id: str) -> UUID:
    """The recorder's id for an aggregate: its own UUID (ledger ids are UUIDs), else one derived from it."""
    try:
        return UUID(aggregate_id)
    except ValueError:
        return uuid5(STORE_NAMESPACE, "aggregate:" + aggregate_id)


def receipt_id(tx_id_hex: str) -> UUID:
    return uuid5(STORE_NAMESPACE, "receipt:" + tx_id_hex)


def _receipt_key(r: ReceiptLike, height: int, index: int) -> UUID:
    """A replayed transaction's rejection is kept under its own key: the id's first receipt
    (the one `receipt()` returns) is the transaction's real outcome."""
    body = r.to_json()
    if body.get("code") == 409 and body.get("message") == DUPLICATE_MESSAGE:
        return uuid5(STORE_NAMESPACE, f"receipt:{r.tx_id}:{height}:{index}")
    return receipt_id(r.tx_id)


def block_id(height: int) -> UUID:
    return uuid5(STORE_NAMESPACE, f"block:{height}")


def event_topic(event_type: str) -> str:
    return EVENT_TOPIC_PREFIX + event_type


class EventStore:
    """Events, receipts and block records of the finalized log, written one block per transaction."""

    def __init__(self, *, data_dir: Path, url: str | None = None) -> None:
        self._datastore: SQLiteDatastore | PostgresDatastore
        self._recorder: ProcessRecorder
        if url is None:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.path: Path | None = data_dir / SQLITE_FILE
            self.location: PostgresLocation | None = None
            sqlite = SQLiteDatastore(str(self.path), lock_timeout=30)
            self._datastore = sqlite
            self._recorder = SQLiteProcessRecorder(sqlite)
        else:
            self.path = None
            self.location = PostgresLocation.parse(url)
            create_schema(self.location)
            loc = self.location
            pg = PostgresDatastore(
                dbname=loc.dbname,
                host=loc.host,
                port=loc.port,
                user=loc.user,
                password=loc.password,
                schema=loc.schema,
                connect_timeout=10,
                idle_in_transaction_session_timeout=5,
                pool_size=2,
                max_overflow=4,
                pool_open_timeout=10,
            )
            self._datastore = pg
            self._recorder = PostgresProcessRecorder(
                pg, events_table_name=loc.events_table, tracking_table_name=loc.tracking_table
            )
        try:
            self._recorder.create_table()
        except BaseException:
            self._datastore.close()
            raise
        self._closed = False

    # -- writing ---------------------------------------------------------------------------

    def append_block(
        self,
        height: int,
        events: Sequence[RecordedEvent],
        receipts: Sequence[ReceiptLike],
        app_hash: bytes,
        encoded: tuple[Sequence[bytes], Sequence[bytes]] | None = None,
    ) -> None:
        """Record one finalized block atomically; a height already recorded is skipped.

        `encoded`: the canonical bytes of the events and of the receipts, when the caller
        already has them (the ledger hashed exactly these); else they are encoded here.
        """
        tracked = self._tracked_height()
        if tracked is not None and height <= tracked:
            return
        if encoded is None:
            encoded = (
                [canonical_json(e.model_dump()) for e in events],
                [canonical_json(dict(r.to_json())) for r in receipts],
            )
        event_bytes, receipt_bytes = encoded
        records = [
            StoredEvent(
                originator_id=originator_id(e.aggregate_id),
                originator_version=e.version,
                topic=event_topic(e.type),
                state=data,
            )
            for e, data in zip(events, event_bytes, strict=True)
        ]
        records.extend(
            StoredEvent(
                originator_id=_receipt_key(r, height, i),
                originator_version=1,
                topic=RECEIPT_TOPIC,
                state=data,
            )
            for i, (r, data) in enumerate(zip(receipts, receipt_bytes, strict=True))
        )
        block = {
            "height": height,
            "app_hash": app_hash.hex(),
            "txs": [r.tx_id for r in receipts],
            "events": len(events),
        }
        records.append(
            StoredEvent(
                originator_id=block_id(height),
                originator_version=1,
                topic=BLOCK_TOPIC,
                state=canonical_json(block),
            )
        )
        try:
            self._recorder.insert_events(records, tracking=Tracking(TRACKING_NAME, height))
        except IntegrityError:
            # Another writer may have recorded this height between our check and insert.
            tracked = self._tracked_height()
            if tracked is not None and tracked >= height:
                log.info("block %d was recorded concurrently; skipping", height)
                return
            raise

    # -- reading ---------------------------------------------------------------------------

    def _tracked_height(self) -> int | None:
        return self._recorder.max_tracking_id(TRACKING_NAME)

    def last_height(self) -> int:
        """Height of the last recorded block, 0 if none."""
        return self._tracked_height() or 0

    def has_height(self, height: int) -> bool:
        tracked = self._tracked_height()
        return tracked is not None and tracked >= height

    def block_record(self, height: int) -> dict[str, Any] | None:
        """`{"height", "app_hash" (hex), "txs", "events"}` of a recorded block."""
        found = self._recorder.select_events(block_id(height), limit=1)
        if not found:
            return None
        value: dict[str, Any] = json.loads(found[0].state)
        return value

    def app_hash(self, height: int) -> bytes | None:
        record = self.block_record(height)
        return None if record is None else bytes.fromhex(record["app_hash"])

    def receipt(self, tx_id_hex: str) -> dict[str, Any] | None:
        found = self._recorder.select_events(receipt_id(tx_id_hex), limit=1)
        if not found:
            return None
        value: dict[str, Any] = json.loads(found[0].state)
        return value

    def events_after(self, position: int, limit: int) -> list[tuple[int, RecordedEvent]]:
        """Up to `limit` domain events with position > `position`, ascending."""
        out: list[tuple[int, RecordedEvent]] = []
        if limit <= 0:
            return out
        start = position
        while len(out) < limit:
            # Receipts and block records sit between events: over-fetch a little.
            want = limit - len(out)
            batch = self._recorder.select_notifications(start, want + want // 2 + 8, inclusive_of_start=False)
            if not batch:
                break
            for n in batch:
                if n.topic.startswith(EVENT_TOPIC_PREFIX):
                    out.append((n.id, RecordedEvent.model_validate_json(n.state)))
                    if len(out) == limit:
                        break
            start = batch[-1].id
        return out

    def iter_events(self, batch: int = 1000) -> Iterator[RecordedEvent]:
        """Every domain event in log order (for rebuilding state and read models)."""
        position = 0
        while True:
            page = self.events_after(position, batch)
            if not page:
                return
            for _, event in page:
                yield event
            position = page[-1][0]

    def max_position(self) -> int:
        """The highest position written (any record); `events_after(max_position())` is empty."""
        return self._recorder.max_notification_id() or 0

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._datastore.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
