"""Deterministic ids: everything a handler names is derived from the transaction, never random."""

from __future__ import annotations

import hashlib
from uuid import UUID, uuid5

#: The root namespace of every uuid5 the ledger derives (fixed forever: ids depend on it).
STELE_NAMESPACE = UUID("6f1d2a4e-8c3b-5e7a-9b0c-53746c652e76")


def derive_id(tx_id_hex: str, n: int) -> str:
    """The n-th id a transaction creates: uuid5 over (tx id, n), as a canonical UUID string."""
    return str(uuid5(STELE_NAMESPACE, f"{tx_id_hex}:{n}"))


def key_id_for(public_key: bytes) -> str:
    """A user key's id: a fingerprint of the key, so a client can name its key before signing."""
    return hashlib.sha256(b"stele/userkey/v1/" + public_key).hexdigest()[:32]
