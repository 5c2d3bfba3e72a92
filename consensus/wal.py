"""Write-ahead log of this validator's own votes.

A vote is appended and fsynced before it leaves the node, so after a crash the
replica is rebuilt with every vote it ever sent and cannot sign a conflicting
one. Records are length-prefixed and CRC-checked; a torn tail from a crash in
the middle of a write is cut off on open.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable
from pathlib import Path

from consensus.codec import DecodeError
from consensus.files import fsync_dir
from consensus.types import Vote

_HEADER = struct.Struct(">II")  # length, crc32
_MAX_RECORD = 4096


class VoteLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._votes: list[Vote] = []
        valid_end = self._load()
        self._fh = open(path, "ab")  # noqa: SIM115 - held open for the node's lifetime
        if self._fh.tell() != valid_end:
            self._fh.truncate(valid_end)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        fsync_dir(self.path.parent)

    def _load(self) -> int:
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, crc = _HEADER.unpack_from(data, pos)
            body = data[pos + _HEADER.size : pos + _HEADER.size + length]
            if length > _MAX_RECORD or len(body) != length or zlib.crc32(body) != crc:
                break
            try:
                self._votes.append(Vote.decode(body))
            except DecodeError:
                break
            pos += _HEADER.size + length
        return pos

    @property
    def votes(self) -> list[Vote]:
        """Every vote recovered on open plus those appended since."""
        return list(self._votes)

    def append(self, votes: Iterable[Vote]) -> None:
        """Append and fsync; returns only once the votes are durable."""
        parts: list[bytes] = []
        new = list(votes)
        for v in new:
            body = v.encode()
            parts.append(_HEADER.pack(len(body), zlib.crc32(body)) + body)
        if not parts:
            return
        self._fh.write(b"".join(parts))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._votes.extend(new)

    def compact(self, min_view: int) -> None:
        """Drop votes for views below `min_view` (already finalized past), atomically."""
        keep = [v for v in self._votes if v.view >= min_view]
        if len(keep) == len(self._votes):
            return
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            for v in keep:
                body = v.encode()
                fh.write(_HEADER.pack(len(body), zlib.crc32(body)) + body)
            fh.flush()
            os.fsync(fh.fileno())
        self._fh.close()
        os.replace(tmp, self.path)
        fsync_dir(self.path.parent)
        self._fh = open(self.path, "ab")  # noqa: SIM115
        self._votes = keep

    def close(self) -> None:
        self._fh.close()
