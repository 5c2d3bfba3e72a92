"""Which data a transaction needs on every validator before a block holding it may be voted for.

A push names the pack that carries its objects; every validator must hold that pack
before it votes for a block with the push, and before it applies one (data availability).
This reads it from the decoded transaction, never by searching its bytes.
"""

from __future__ import annotations

import re

from commands.envelope import EnvelopeError, Transaction, decode_transaction

#: The command kind of a `git push`.
PUSH_KIND = "git.push_refs"

_DIGEST = re.compile(r"[0-9a-f]{64}")


def packs_of(tx: Transaction) -> tuple[str, ...]:
    """The packs a decoded transaction needs (a push naming a well-formed digest; else none).

    A malformed digest needs nothing: the handler refuses the push.
    """
    if tx.kind != PUSH_KIND:
        return ()
    digest = tx.payload.get("pack_digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        return ()
    return (digest,)


def packs_needed(raw: bytes) -> tuple[str, ...]:
    """`packs_of` for a transaction's bytes; undecodable bytes need nothing (they get a receipt)."""
    try:
        tx = decode_transaction(raw)
    except EnvelopeError:
        return ()
    return packs_of(tx)
