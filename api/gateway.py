"""Turns an authenticated API request into a transaction and waits for its outcome.

The node attests the caller (it checked their token) and signs the transaction;
every replica re-checks that attestation and the caller's rights when the block
is applied. A command is answered only after its transaction is final and applied
here, with the log position in `X-Stele-Position`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from adapters.consensus_host import ConsensusHost
from adapters.ledger import LedgerHost
from api.auth import Caller
from api.errors import ApiError
from commands.envelope import sign_as_node
from commands.ledger import HandlerFault, Receipt, precheck_transaction
from consensus.mempool import AddResult

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 20.0
MIN_POSITION_WAIT_S = 10.0


class CommandFailed(ApiError):
    """A rejected command; carries the receipt's position so clients can still read after it."""


class CommandGateway:
    def __init__(self, host: ConsensusHost, ledger: LedgerHost, seed: bytes) -> None:
        self.host = host
        self.ledger = ledger
        self._seed = seed

    def build(self, caller: Caller, kind: str, payload: dict[str, Any]) -> bytes:
        tx = sign_as_node(
            chain_id=self.ledger.chain_id,
            kind=kind,
            payload=payload,
            actor=caller.user.login,
            nonce=secrets.token_hex(16),
            seed=self._seed,
            node_index=self.host.index,
            token_id=caller.token.token_id,
        )
        return tx.encode()

    async def precheck(self, raw: bytes) -> Receipt:
        """The receipt the command would get in the next block on this node's state.

        Runs in a worker thread (a push's check walks its objects, which takes long for a
        large pack). Raises `GitViewError` if a push names a pack this node cannot read,
        and ApiError(500) if the handler fails (a bug or a fault of this node).
        """
        ctx = self.ledger.next_context(time.time_ns() // 1_000_000)
        try:
            return await asyncio.to_thread(precheck_transaction, self.ledger.state, ctx, raw)
        except HandlerFault as exc:
            log.error("precheck failed: %s", exc)
            raise ApiError(
                500, "this node could not check the command; try again or ask another node"
            ) from None

    async def run(self, caller: Caller, kind: str, payload: dict[str, Any]) -> Receipt:
        """Submit a command and return its successful receipt, or raise the rejection as an ApiError."""
        raw = self.build(caller, kind, payload)
        early = await self.precheck(raw)
        if not early.ok:
            raise ApiError(early.code, early.message)
        return await self.submit(raw)

    async def submit(self, raw: bytes) -> Receipt:
        """Submit and wait for the receipt; a rejection is raised as an ApiError."""
        receipt = await self.outcome(raw)
        if not receipt.ok:
            raise CommandFailed(receipt.code, receipt.message, {"X-Stele-Position": str(receipt.height)})
        return receipt

    async def outcome(self, raw: bytes, timeout_s: float = COMMAND_TIMEOUT_S) -> Receipt:
        """Submit and wait for the receipt, accepted or rejected; ApiError if there is none
        (no quorum, overloaded, not final in time)."""
        host = self.host
        if not host.quorum_reachable():
            raise ApiError(
                503,
                f"no quorum reachable: connected to {host.peers_connected + 1} of "
                f"{host.validators.n} validators, {host.validators.quorum} needed",
                {"Retry-After": "1"},
            )
        result, tid = host.submit(raw)
        if result == AddResult.FULL:
            raise ApiError(503, "the node is overloaded (mempool full), retry later", {"Retry-After": "1"})
        if result == AddResult.TOO_LARGE:
            raise ApiError(413, "command too large")
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            receipt = await self.ledger.wait_receipt(tid.hex(), min(max(remaining, 0.0), 0.5))
            if receipt is not None:
                break
            if not host.quorum_reachable():
                raise ApiError(503, "lost contact with a quorum of validators before the command was final")
            if remaining <= 0:
                raise ApiError(
                    504,
                    f"outcome unknown: not final within {timeout_s:g}s, it may still apply "
                    f"(transaction {tid.hex()}, see /api/v1/receipts/{tid.hex()})",
                )
        return receipt

    async def wait_position(self, position: int | None) -> None:
        """Block a read until this node has applied `position` (bounded)."""
        if position is None or position <= self.ledger.height:
            return
        if not await self.ledger.wait_height(position, MIN_POSITION_WAIT_S):
            raise ApiError(
                504,
                f"this node has applied position {self.ledger.height}, not yet {position}; "
                "retry, or ask another node",
                {"Retry-After": "1"},
            )
