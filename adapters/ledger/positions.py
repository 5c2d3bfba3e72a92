"""Waiting for positions: a request waits for its transaction's receipt, or for a log height.

Used only on the event loop: the ledger's worker reports each applied block through
`notify`, scheduled on the loop, after the block's state is visible to readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from commands.ledger import Receipt


class PositionWaiters:
    def __init__(
        self, applied_height: Callable[[], int], stored_receipt: Callable[[str], Receipt | None]
    ) -> None:
        self._applied_height = applied_height
        self._stored_receipt = stored_receipt
        self._receipts: dict[str, list[asyncio.Future[Receipt]]] = {}
        self._heights: list[tuple[int, asyncio.Future[None]]] = []

    def notify(self, height: int, receipts: tuple[Receipt, ...]) -> None:
        """Block `height` is applied and visible, with these receipts."""
        for r in receipts:
            for fut in self._receipts.pop(r.tx_id, ()):
                if not fut.done():
                    fut.set_result(r)
        if self._heights:
            keep = []
            for target, waiter in self._heights:
                if target <= height:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    keep.append((target, waiter))
            self._heights = keep

    def applied_receipt(self, tx_id_hex: str) -> Receipt | None:
        """The receipt if its block is applied and visible here (stored is not enough: the
        worker stores a block's events before its state becomes visible)."""
        found = self._stored_receipt(tx_id_hex)
        if found is not None and found.height <= self._applied_height():
            return found
        return None

    async def wait_receipt(self, tx_id_hex: str, timeout_s: float) -> Receipt | None:
        """The receipt once the transaction is applied on this node; None on timeout."""
        found = self.applied_receipt(tx_id_hex)
        if found is not None:
            return found
        fut: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        self._receipts.setdefault(tx_id_hex, []).append(fut)
        # Applied between the first look and now? (notify runs on this loop, so not during it.)
        found = self.applied_receipt(tx_id_hex)
        if found is not None:
            fut.set_result(found)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._receipts.get(tx_id_hex)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._receipts[tx_id_hex]

    async def wait_height(self, height: int, timeout_s: float) -> bool:
        """Wait until this node has applied `height`; False on timeout."""
        if height <= self._applied_height():
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._heights.append((height, fut))
        try:
            await asyncio.wait_for(fut, timeout_s)
            return True
        except TimeoutError:
            return height <= self._applied_height()
        finally:
            self._heights = [(h, f) for h, f in self._heights if f is not fut]
