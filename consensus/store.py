"""Finalized blocks and their certificates, in SQLite (stdlib) under `<data-dir>/consensus/`.

The finalized chain is what a restarted node resumes from and what it serves to
peers that are catching up. Heights are appended in order inside one transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from consensus.interface import Finalized
from consensus.types import Block, Certificate


class BlockStore:
    """Implements `consensus.interface.FinalizedStore` on SQLite in WAL mode."""

    def __init__(self, path: Path, cache_size: int = 512) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS finalized ("
            " height INTEGER PRIMARY KEY, hash BLOB NOT NULL UNIQUE, view INTEGER NOT NULL,"
            " block BLOB NOT NULL, proof BLOB NOT NULL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS voted ("
            " hash BLOB PRIMARY KEY, height INTEGER NOT NULL, block BLOB NOT NULL)"
        )
        row = self._db.execute("SELECT MAX(height) FROM finalized").fetchone()
        self._last = int(row[0]) if row and row[0] is not None else 0
        self._cache: dict[int, Finalized] = {}
        self._cache_size = cache_size

    def last_height(self) -> int:
        return self._last

    def get(self, height: int) -> Finalized | None:
        if height < 1 or height > self._last:
            return None
        hit = self._cache.get(height)
        if hit is not None:
            return hit
        row = self._db.execute("SELECT block, proof FROM finalized WHERE height = ?", (height,)).fetchone()
        if row is None:
            return None
        return Finalized(Block.decode(bytes(row[0])), Certificate.decode(bytes(row[1])))

    def height_of(self, block_hash: bytes) -> int | None:
        row = self._db.execute("SELECT height FROM finalized WHERE hash = ?", (block_hash,)).fetchone()
        return int(row[0]) if row else None

    def append(self, items: Iterable[Finalized]) -> None:
        rows = []
        expected = self._last + 1
        batch = list(items)
        for f in batch:
            if f.block.height != expected:
                raise ValueError(f"finalized height {f.block.height} out of order (expected {expected})")
            rows.append((f.block.height, f.block.hash, f.block.view, f.block.encode(), f.proof.encode()))
            expected += 1
        if not rows:
            return
        self._db.execute("BEGIN")
        try:
            self._db.executemany("INSERT INTO finalized VALUES (?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        for f in batch:
            self._cache[f.block.height] = f
        self._last = expected - 1
        while len(self._cache) > self._cache_size:
            self._cache.pop(next(iter(self._cache)))

    def save_voted(self, blocks: Iterable[Block]) -> None:
        """Keep blocks this validator voted for until they are final (see Output.blocks)."""
        rows = [(b.hash, b.height, b.encode()) for b in blocks]
        if rows:
            self._db.executemany("INSERT OR IGNORE INTO voted VALUES (?, ?, ?)", rows)

    def voted_blocks(self) -> list[Block]:
        return [
            Block.decode(bytes(r[0])) for r in self._db.execute("SELECT block FROM voted ORDER BY height")
        ]

    def prune_voted(self, upto_height: int) -> None:
        self._db.execute("DELETE FROM voted WHERE height <= ?", (upto_height,))

    def close(self) -> None:
        self._db.close()
