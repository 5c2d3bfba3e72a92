"""Ed25519 key files for validators and users.

A key file is small JSON holding the 32-byte seed and, as a cross-check, the
public key derived from it. It is written owner-only (0600) and atomically, so a
crash mid-write never leaves a truncated key behind, and a file whose public key
does not match its seed is refused rather than silently signing as someone else.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import nacl.utils
from nacl.signing import SigningKey

from consensus.files import fsync_dir

KEY_TYPE = "ed25519"
SEED_LEN = 32


class KeyFileError(Exception):
    """A key file is missing, unreadable, malformed, or inconsistent."""


def generate_key() -> bytes:
    """A fresh random Ed25519 seed (32 bytes from the OS CSPRNG)."""
    return bytes(nacl.utils.random(SEED_LEN))


def public_key(seed: bytes) -> bytes:
    """The Ed25519 public key for `seed`."""
    _check_seed(seed)
    return bytes(SigningKey(seed).verify_key)


def save_key(path: str | os.PathLike[str], seed: bytes, *, overwrite: bool = True) -> bytes:
    """Write `seed` to `path` (mode 0600, atomically); returns the public key.

    With overwrite=False an existing file is never replaced, even by a racing writer.
    """
    _check_seed(seed)
    p = Path(path)
    pub = public_key(seed)
    doc = {"type": KEY_TYPE, "seed": seed.hex(), "pubkey": pub.hex()}
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise KeyFileError(f"cannot write key file {p}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, p)
        else:
            try:
                os.link(tmp, p)  # fails if p exists: no window where another file is clobbered
            except FileExistsError:
                raise KeyFileError(f"key file {p} already exists") from None
            finally:
                os.unlink(tmp)
    except KeyFileError:
        raise
    except OSError as e:
        _unlink_quietly(tmp)
        raise KeyFileError(f"cannot write key file {p}: {e.strerror or e}") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(p.parent)
    return pub


def load_key(path: str | os.PathLike[str]) -> bytes:
    """Read a key file and return its seed, refusing anything malformed."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"key file {p} does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(f"key file {p} is a directory") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read key file {p}: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        raise KeyFileError(f"key file {p} is not valid JSON (garbled or not a Stele key file)") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"key file {p} must contain a JSON object")
    if doc.get("type") != KEY_TYPE:
        raise KeyFileError(f"key file {p}: unsupported key type {doc.get('type')!r} (expected {KEY_TYPE!r})")
    seed = _hex_field(p, doc, "seed", SEED_LEN)
    pub = _hex_field(p, doc, "pubkey", 32)
    if public_key(seed) != pub:
        raise KeyFileError(f"key file {p}: pubkey does not match the seed (file corrupted or edited)")
    return seed


def _hex_field(p: Path, doc: dict[str, object], name: str, length: int) -> bytes:
    value = doc.get(name)
    if not isinstance(value, str):
        raise KeyFileError(f"key file {p}: missing {name!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise KeyFileError(f"key file {p}: {name!r} is not valid hex") from None
    if len(raw) != length:
        raise KeyFileError(f"key file {p}: {name!r} must be {length} bytes, got {len(raw)}")
    return raw


def _check_seed(seed: bytes) -> None:
    if not isinstance(seed, bytes) or len(seed) != SEED_LEN:
        raise ValueError(f"an Ed25519 seed is {SEED_LEN} bytes")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
