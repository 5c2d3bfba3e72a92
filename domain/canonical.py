"""Canonical JSON (RFC 8785) for everything that is hashed or signed in the ledger."""

from __future__ import annotations

from typing import Any

import rfc8785


class NonCanonicalValue(ValueError):
    """A value that has no single canonical encoding here (floats, non-string keys, ...)."""


def _check(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -(2**53) < value < 2**53:
            raise NonCanonicalValue(f"{path}: integer out of the interoperable range")
        return
    if isinstance(value, float):
        raise NonCanonicalValue(f"{path}: floats are not allowed in ledger data")
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise NonCanonicalValue(f"{path}: object keys must be strings")
            _check(v, f"{path}.{k}")
        return
    raise NonCanonicalValue(f"{path}: unsupported type {type(value).__name__}")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8; floats rejected so the bytes never depend on formatting."""
    _check(value, "$")
    return rfc8785.dumps(value)
