"""Strict binary reader/writer for consensus wire objects.

Consensus objects are hashed and signed, so their encoding must be canonical:
fixed-width big-endian integers and length-prefixed byte strings, nothing else.
The reader rejects truncated input, trailing bytes and over-long fields, which is
what lets a node drop a malformed frame instead of crashing on it.
"""

from __future__ import annotations

import struct


class DecodeError(ValueError):
    """Raised for any malformed, truncated or oversized encoding."""


class Writer:
    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def u8(self, v: int) -> Writer:
        self._parts.append(struct.pack(">B", v))
        return self

    def u16(self, v: int) -> Writer:
        self._parts.append(struct.pack(">H", v))
        return self

    def u32(self, v: int) -> Writer:
        self._parts.append(struct.pack(">I", v))
        return self

    def u64(self, v: int) -> Writer:
        self._parts.append(struct.pack(">Q", v))
        return self

    def fixed(self, b: bytes) -> Writer:
        self._parts.append(b)
        return self

    def var(self, b: bytes) -> Writer:
        self._parts.append(struct.pack(">I", len(b)))
        self._parts.append(b)
        return self

    def getvalue(self) -> bytes:
        return b"".join(self._parts)


class Reader:
    __slots__ = ("_buf", "_pos")

    def __init__(self, buf: bytes) -> None:
        self._buf = memoryview(buf)
        self._pos = 0

    def _take(self, n: int) -> memoryview:
        end = self._pos + n
        if n < 0 or end > len(self._buf):
            raise DecodeError("truncated input")
        out = self._buf[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return int(struct.unpack(">B", self._take(1))[0])

    def u16(self) -> int:
        return int(struct.unpack(">H", self._take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self._take(8))[0])

    def fixed(self, n: int) -> bytes:
        return bytes(self._take(n))

    def var(self, limit: int) -> bytes:
        n = self.u32()
        if n > limit:
            raise DecodeError(f"field of {n} bytes exceeds limit {limit}")
        return bytes(self._take(n))

    def count(self, limit: int) -> int:
        n = self.u32()
        if n > limit:
            raise DecodeError(f"count {n} exceeds limit {limit}")
        return n

    def remaining(self) -> int:
        return len(self._buf) - self._pos

    def done(self) -> None:
        if self._pos != len(self._buf):
            raise DecodeError("trailing bytes")
