"""Apply-time authentication of a transaction against the state at its height.

A node attestation is only as good as the token it names: the token must exist, belong
to the actor and not be revoked *now*, so a token revoked in an earlier block (or earlier
in the same block) stops working everywhere at the same point in the log. A user
signature needs no trust in any node: every replica verifies it against the actor's
registered key.
"""

from __future__ import annotations

from collections.abc import Sequence

from commands.decision import UNAUTHORIZED, Rejection
from commands.envelope import NODE_NAMESPACE, USER_NAMESPACE, NodeAttestation, Transaction, verify_signature
from domain.records import User
from domain.state import LedgerState


def _fail(message: str) -> Rejection:
    return Rejection(UNAUTHORIZED, message)


def authenticate(state: LedgerState, tx: Transaction, validators: Sequence[bytes]) -> User | Rejection:
    """The actor if the transaction's auth holds at this height; 401 otherwise."""
    if not 0 <= tx.submitted_by < len(validators):
        return _fail(f"submitted_by {tx.submitted_by} is not a validator index")
    auth = tx.auth
    actor = state.user_by_login(tx.actor)
    if isinstance(auth, NodeAttestation):
        if auth.node != tx.submitted_by:
            return _fail("a node attestation must come from the node that submitted the transaction")
        if not verify_signature(validators[auth.node], NODE_NAMESPACE, tx):
            return _fail("bad node attestation signature")
        if actor is None:
            return _fail(f"unknown actor {tx.actor!r}")
        token = state.token_by_id(auth.token_id)
        if token is None or token.user_id != actor.user_id:
            return _fail("unknown token")
        if token.revoked:
            return _fail("token was revoked")
        return actor
    if actor is None:
        return _fail(f"unknown actor {tx.actor!r}")
    key = state.user_key(auth.key_id)
    if key is None or key.user_id != actor.user_id:
        return _fail("unknown signing key")
    if not verify_signature(bytes.fromhex(key.public_key), USER_NAMESPACE, tx):
        return _fail("bad signature")
    return actor
