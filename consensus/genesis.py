"""The genesis file: chain id, start time and the fixed validator set.

Every node must derive the same validator indices from the same file, so the
validators are always kept sorted by public key (index i here is index i in
`ValidatorSet`), and the file's hash is taken over canonical JSON so operators
can compare genesis files by a short fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consensus.crypto import ValidatorSet
from consensus.files import atomic_write
from consensus.types import MAX_VALIDATORS, PUBKEY_LEN

_CHAIN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_NAME_LEN = 64
_MAX_HOST_LEN = 253
# Keys this module owns; anything else at the top level is carried in `extra`.
_RESERVED_KEYS = frozenset({"chain_id", "genesis_time_ms", "validators"})
_VALIDATOR_KEYS = frozenset({"name", "pubkey", "host", "p2p_port", "http_port"})
_MAX_TIME_MS = 2**63 - 1


class GenesisError(ValueError):
    """A genesis file or value is invalid; the message says what and where."""


@dataclass(frozen=True)
class ValidatorInfo:
    """One validator: its display name, Ed25519 key and where to reach it."""

    name: str
    pubkey: bytes
    host: str
    p2p_port: int
    http_port: int

    def __post_init__(self) -> None:
        who = f"validator {self.name!r}" if isinstance(self.name, str) else "validator"
        if not isinstance(self.name, str) or not 1 <= len(self.name) <= _MAX_NAME_LEN:
            raise GenesisError(f"{who}: name must be 1..{_MAX_NAME_LEN} characters")
        if not self.name.isprintable() or self.name.strip() != self.name:
            raise GenesisError(f"{who}: name must be printable with no leading/trailing spaces")
        if not isinstance(self.pubkey, bytes) or len(self.pubkey) != PUBKEY_LEN:
            raise GenesisError(f"{who}: public key must be {PUBKEY_LEN} bytes")
        if not isinstance(self.host, str) or not 1 <= len(self.host) <= _MAX_HOST_LEN:
            raise GenesisError(f"{who}: host must be 1..{_MAX_HOST_LEN} characters")
        if any(c.isspace() or not c.isprintable() for c in self.host):
            raise GenesisError(f"{who}: host {self.host!r} contains whitespace or control characters")
        for label, port in (("p2p_port", self.p2p_port), ("http_port", self.http_port)):
            if not _is_int(port) or not 1 <= port <= 65535:
                raise GenesisError(f"{who}: {label} must be an integer in 1..65535, got {port!r}")
        if self.p2p_port == self.http_port:
            raise GenesisError(f"{who}: p2p_port and http_port must differ (both {self.p2p_port})")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pubkey": self.pubkey.hex(),
            "host": self.host,
            "p2p_port": self.p2p_port,
            "http_port": self.http_port,
        }

    @staticmethod
    def from_json(d: object, where: str = "validator") -> ValidatorInfo:
        if not isinstance(d, dict):
            raise GenesisError(f"{where}: expected an object, got {type(d).__name__}")
        missing = sorted(_VALIDATOR_KEYS - d.keys())
        if missing:
            raise GenesisError(f"{where}: missing field(s) {', '.join(missing)}")
        unknown = sorted(str(k) for k in d.keys() - _VALIDATOR_KEYS)
        if unknown:
            raise GenesisError(f"{where}: unknown field(s) {', '.join(unknown)}")
        name = d["name"]
        if isinstance(name, str):
            where = f"{where} ({name!r})"
        return ValidatorInfo(
            name=name,
            pubkey=parse_pubkey(d["pubkey"], where),
            host=d["host"],
            p2p_port=d["p2p_port"],
            http_port=d["http_port"],
        )


@dataclass(frozen=True)
class Genesis:
    """The chain's starting point; validators are sorted by public key on construction."""

    chain_id: str
    genesis_time_ms: int
    validators: tuple[ValidatorInfo, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.chain_id, str) or not _CHAIN_ID_RE.fullmatch(self.chain_id):
            raise GenesisError(
                "chain_id must be 1..64 characters of letters, digits, '.', '_' or '-', "
                f"got {self.chain_id!r}"
            )
        if not _is_int(self.genesis_time_ms) or not 0 <= self.genesis_time_ms <= _MAX_TIME_MS:
            raise GenesisError(
                f"genesis_time_ms must be a non-negative integer, got {self.genesis_time_ms!r}"
            )
        vals = tuple(self.validators)
        if not 1 <= len(vals) <= MAX_VALIDATORS:
            raise GenesisError(f"a chain needs 1..{MAX_VALIDATORS} validators, got {len(vals)}")
        if not all(isinstance(v, ValidatorInfo) for v in vals):
            raise GenesisError("validators must be ValidatorInfo values")
        _check_distinct(vals)
        if not isinstance(self.extra, dict):
            raise GenesisError("extra must be a dict")
        clash = sorted(_RESERVED_KEYS & self.extra.keys())
        if clash:
            raise GenesisError(f"extra may not redefine {', '.join(clash)}")
        if not all(isinstance(k, str) for k in self.extra):
            raise GenesisError("extra keys must be strings")
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise GenesisError(f"extra must be plain JSON: {e}") from None
        object.__setattr__(self, "validators", tuple(sorted(vals, key=lambda v: v.pubkey)))

    @property
    def n(self) -> int:
        return len(self.validators)

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(self.chain_id, tuple(v.pubkey for v in self.validators))

    def index_of(self, pubkey: bytes) -> int | None:
        """The validator index of `pubkey`, or None if it is not a validator."""
        for i, v in enumerate(self.validators):
            if v.pubkey == pubkey:
                return i
        return None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = json.loads(json.dumps(self.extra))  # a deep copy the caller may mutate
        d["chain_id"] = self.chain_id
        d["genesis_time_ms"] = self.genesis_time_ms
        d["validators"] = [v.to_json() for v in self.validators]
        return d

    @staticmethod
    def from_json(d: object) -> Genesis:
        if not isinstance(d, dict):
            raise GenesisError(f"genesis must be a JSON object, got {type(d).__name__}")
        missing = sorted(_RESERVED_KEYS - d.keys())
        if missing:
            raise GenesisError(f"genesis is missing field(s) {', '.join(missing)}")
        raw_vals = d["validators"]
        if not isinstance(raw_vals, list):
            raise GenesisError("genesis 'validators' must be a list")
        vals = tuple(ValidatorInfo.from_json(v, f"validators[{i}]") for i, v in enumerate(raw_vals))
        extra = {k: v for k, v in d.items() if k not in _RESERVED_KEYS}
        return Genesis(d["chain_id"], d["genesis_time_ms"], vals, extra)

    def canonical_bytes(self) -> bytes:
        """Sorted keys, compact separators, UTF-8: the bytes that `hash()` covers."""
        return json.dumps(
            self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")

    def hash(self) -> bytes:
        return hashlib.sha256(self.canonical_bytes()).digest()

    @staticmethod
    def load(path: str | os.PathLike[str]) -> Genesis:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise GenesisError(f"genesis file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            raise GenesisError(f"cannot read genesis file {p}: {e}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenesisError(f"genesis file {p} is not valid JSON: {e}") from None
        try:
            return Genesis.from_json(data)
        except GenesisError as e:
            raise GenesisError(f"genesis file {p}: {e}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a genesis."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        atomic_write(Path(path), text.encode("utf-8"), 0o644)


def parse_pubkey(value: object, where: str = "public key") -> bytes:
    """Parse a hex-encoded Ed25519 public key, with a message naming `where` on failure."""
    if not isinstance(value, str):
        raise GenesisError(f"{where}: public key must be a hex string")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        raise GenesisError(f"{where}: public key is not valid hex") from None
    if len(key) != PUBKEY_LEN:
        raise GenesisError(f"{where}: public key must be {PUBKEY_LEN} bytes ({2 * PUBKEY_LEN} hex digits)")
    return key


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_distinct(vals: tuple[ValidatorInfo, ...]) -> None:
    keys: dict[bytes, str] = {}
    names: set[str] = set()
    addrs: dict[tuple[str, int], str] = {}
    for v in vals:
        if v.pubkey in keys:
            raise GenesisError(
                f"validators {keys[v.pubkey]!r} and {v.name!r} share public key {v.pubkey.hex()[:16]}…"
            )
        keys[v.pubkey] = v.name
        if v.name in names:
            raise GenesisError(f"validator name {v.name!r} is used twice")
        names.add(v.name)
        for port in (v.p2p_port, v.http_port):
            addr = (v.host.lower(), port)
            if addr in addrs:
                raise GenesisError(
                    f"validators {addrs[addr]!r} and {v.name!r} both use address {v.host}:{port}"
                )
            addrs[addr] = v.name
