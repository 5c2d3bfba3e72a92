"""Block execution: the finalized state, and blocks executed ahead of finality for their app hash.

Consensus asks for the app hash a child of some block must carry, which is the state hash
after that block, before the block is final. So blocks are executed on forks of the
finalized state, and the results kept by block hash until the block is finalized (its
result is then merged into the finalized state) or loses (a competitor at its height was
finalized). Only one thread may execute and advance (the ledger's worker); any thread may
read `applied` and `cached_app_hash`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from commands.git_view import GitView
from commands.ledger import BlockContext, BlockResult, execute_block
from consensus.types import Block
from domain.rules import ChainRules
from domain.state import LedgerState


@dataclass(frozen=True, slots=True)
class Applied:
    """The last applied block and the app hash after it, published together."""

    block: Block
    app_hash: bytes


class BlockExecution:
    def __init__(
        self,
        *,
        chain_id: str,
        validators: tuple[bytes, ...],
        rules: ChainRules,
        git: GitView | None,
        state: LedgerState,
        tip: Block,
    ) -> None:
        self.chain_id = chain_id
        self.validators = validators
        self.rules = rules
        self.git = git
        #: The finalized state (readers on other threads see whole values, never torn ones).
        self.state = state
        self.applied = Applied(tip, state.app_hash)
        self._results: dict[bytes, BlockResult] = {}
        self.executed = 0

    @property
    def tip(self) -> Block:
        return self.applied.block

    def context(self, height: int, timestamp_ms: int) -> BlockContext:
        return BlockContext(
            self.chain_id, height, timestamp_ms, self.validators, self.git, self.rules.at(height)
        )

    def cached_app_hash(self, block: Block) -> bytes | None:
        """The app hash after `block` if it is known without executing anything."""
        applied = self.applied
        if block.hash == applied.block.hash:
            return applied.app_hash
        result = self._results.get(block.hash)
        return None if result is None else result.app_hash

    def knows(self, block_hash: bytes) -> bool:
        return block_hash == self.applied.block.hash or block_hash in self._results

    def execute_chain(self, chain: Sequence[Block]) -> bytes | None:
        """Execute `chain` (oldest first; the first block's parent is the tip or already
        executed) on forks, keeping each result; the app hash after the last, or None if the
        chain no longer extends what is known (the tip moved on meanwhile).

        Raises what `execute_block` raises: `GitViewError`, `HandlerFault`.
        """
        todo = [b for b in chain if b.hash not in self._results]
        if not todo:
            return self.cached_app_hash(chain[-1]) if chain else None
        first = todo[0]
        if first.height <= self.tip.height:
            return None
        if first.parent == self.tip.hash:
            state, app_hash = self.state, self.applied.app_hash
        else:
            base = self._results.get(first.parent)
            if base is None:
                return None
            state, app_hash = base.state, base.app_hash
        for block in todo:
            result = execute_block(state, app_hash, self.context(block.height, block.timestamp_ms), block.txs)
            self.executed += 1
            self._results[block.hash] = result
            state, app_hash = result.state, result.app_hash
        return app_hash

    def result_for(self, block: Block) -> BlockResult:
        """The block's result: the speculative one, or executed now on the finalized state."""
        found = self._results.pop(block.hash, None)
        if found is not None:
            return found
        self.executed += 1
        return execute_block(
            self.state, self.applied.app_hash, self.context(block.height, block.timestamp_ms), block.txs
        )

    def advance(self, block: Block, result: BlockResult) -> None:
        """Make `result` the finalized state and forget results that can no longer be final."""
        result.state.merge_into_parent()
        self.applied = Applied(block, result.app_hash)
        for h in [h for h, r in self._results.items() if r.height <= block.height]:
            del self._results[h]

    @property
    def speculative(self) -> int:
        return len(self._results)
