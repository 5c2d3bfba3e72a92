"""Transactions and receipts as the native routes show them: only to callers who may see them.

The rule is `commands.visibility`: the authenticated actor, site admins, and whoever may
read everything the transaction touched, judged on this node's finalized state, and no
more than the caller's token scopes let it read (from protocol version 2).
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

from adapters.consensus_host import ConsensusHost
from adapters.ledger import LedgerHost
from api.auth import Caller
from commands.envelope import EnvelopeError, decode_transaction
from commands.ledger import Receipt
from commands.visibility import can_see, touched, touched_by_bytes
from consensus.interface import Finalized
from consensus.types import Block


@dataclass(frozen=True)
class Viewer:
    """An authenticated caller as the visibility rule needs them: who, and their token's scopes."""

    user_id: str
    token_scopes: tuple[str, ...]


#: A viewer: authenticated (`Viewer`), a bare user id (no token, so no scopes), or anonymous.
ViewerLike = Viewer | str | None


def viewer_of(caller: Caller | None) -> Viewer | None:
    return None if caller is None else Viewer(caller.user.user_id, caller.token.scopes)


def _judge(ledger: LedgerHost, viewer: ViewerLike) -> tuple[str | None, tuple[str, ...] | None]:
    """(user id, the scopes that bind or None) of a viewer, under the rules of the next block."""
    if not isinstance(viewer, Viewer):
        return viewer, None
    binding = ledger.rules.at(ledger.height + 1).token_scopes
    return viewer.user_id, viewer.token_scopes if binding else None


def block_txs(host: ConsensusHost, height: int) -> tuple[bytes, ...] | None:
    """The transactions of the finalized block at `height`, None if this node has none there."""
    found = host.block(height)
    block: Block | None = found.block if isinstance(found, Finalized) else found
    return None if block is None else block.txs


def tx_of(host: ConsensusHost, receipt: Receipt) -> bytes | None:
    """The bytes of the transaction a receipt is about (None: this node cannot find them)."""
    txs = block_txs(host, receipt.height)
    return txs[receipt.index] if txs is not None and 0 <= receipt.index < len(txs) else None


def raw_visible(ledger: LedgerHost, viewer: ViewerLike, raw: bytes | None, receipt: Receipt) -> bool:
    """Whether the viewer may see this outcome of these transaction bytes (and so learn of it)."""
    what = touched_by_bytes(raw, receipt, receipt.height, rules=ledger.rules.at(receipt.height))
    user_id, scopes = _judge(ledger, viewer)
    return can_see(ledger.state, user_id, what, scopes=scopes)


#: Transactions rendered between two yields to the event loop (a full block costs ~0.4 s).
_SLICE = 64


async def block_transactions(
    ledger: LedgerHost, viewer: ViewerLike, height: int, txs: tuple[bytes, ...]
) -> list[dict[str, Any]]:
    """Each transaction of a block as the viewer may see it; the others only as redacted ids.

    A visible transaction shows its kind, actor, payload and the node that submitted it, and
    its receipt once this node has applied the block (never its `auth` or nonce). Bytes that
    do not decode show null fields (site admins only ever see them).

    It yields to the event loop every few dozen transactions, so consensus keeps its
    timers while a big block is rendered; each transaction is judged on the finalized
    state of the moment (a later block may be applied in between, never half of one).
    """
    out: list[dict[str, Any]] = []
    user_id, scopes = _judge(ledger, viewer)
    for index, raw in enumerate(txs):
        if index and index % _SLICE == 0:
            await asyncio.sleep(0)
        tx_id = hashlib.sha256(raw).hexdigest()
        receipt = ledger.receipt(tx_id)
        try:
            tx = decode_transaction(raw)
        except EnvelopeError:
            tx = None
        # A replayed copy of an earlier transaction is judged by that transaction's receipt.
        judged_at = receipt.height if receipt is not None else height
        what = touched(tx, receipt, judged_at, rules=ledger.rules.at(judged_at))
        if not can_see(ledger.state, user_id, what, scopes=scopes):
            out.append({"tx_id": tx_id, "redacted": True})
            continue
        own = receipt if receipt is not None and (receipt.height, receipt.index) == (height, index) else None
        out.append(
            {
                "tx_id": tx_id,
                "index": index,
                "kind": None if tx is None else tx.kind,
                "actor": None if tx is None else tx.actor,
                "payload": None if tx is None else tx.payload,
                "submitted_by": None if tx is None else tx.submitted_by,
                "receipt": None if own is None else own.to_json(),
            }
        )
    return out
