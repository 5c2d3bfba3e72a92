"""Applying a finalized block's result to this node's stores: events, read models, repositories.

The event store gets the block's events, receipts and height in one atomic write (a
height already recorded must re-execute to the same app hash, or the node has diverged);
the DuckDB read models get one batch; the pushes the block accepted are carried out on
the bare repositories. Those are derived state: a failure to write one is this node's
alone, so the repository is marked for repair (`adapters.git.repair`) and the block stays
applied. A failure of the event store or the read models stops the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.consensus_host import NodeHalt
from adapters.event_store import EventStore
from adapters.git.repair import RepoRepairs
from adapters.git.store import GitStore
from commands.ledger import BlockResult
from consensus.types import Block
from projections.projector import Projector


class LedgerDivergence(NodeHalt):
    """This node's state no longer matches what the chain committed to."""


@dataclass
class BlockApplication:
    events: EventStore
    projector: Projector
    git: GitStore | None = None
    repairs: RepoRepairs | None = None

    def persist(self, block: Block, result: BlockResult) -> None:
        """Record the block: the event store, then the read models, then the repositories."""
        if self.events.has_height(block.height):
            stored = self.events.app_hash(block.height)
            if stored != result.app_hash:
                raise LedgerDivergence(
                    f"re-executing height {block.height} gave a different app hash than stored"
                )
        else:
            encoded = (
                (result.event_bytes, result.receipt_bytes)
                if result.event_bytes or not result.events
                else None
            )
            self.events.append_block(block.height, result.events, result.receipts, result.app_hash, encoded)
        if result.events:
            # Blocks without events change no read model; skipping them keeps idle blocks cheap
            # (the projector's tracking may lag behind; it catches up with the next events).
            self.projector.apply_block(block.height, result.events)
        self.carry_out_pushes(result)

    def carry_out_pushes(self, result: BlockResult) -> None:
        """Make the block's accepted pushes visible in the bare repositories: objects, then refs.

        Idempotent (a replay after a crash redoes it), and done before anyone waiting for the
        receipt is told, so an acknowledged push is readable here.
        """
        if self.git is None or self.repairs is None:
            return
        for event in result.events:
            if event.type != "RefsUpdated":
                continue
            repo_id = str(event.data["repo_id"])
            digest = str(event.data.get("pack_digest") or "")
            if self.repairs.needs_repair(repo_id):
                self.repairs.mark(repo_id, "a push was applied while it waits for repair")
                continue
            repo = result.state.repo(repo_id)
            try:
                if digest:
                    self.git.import_pack(repo_id, digest)
                self.git.write_refs(repo_id, dict(result.state.refs(repo_id)))
                if repo is not None:
                    self.git.set_head(repo_id, repo.default_branch)
            except Exception as exc:  # any local fault: the ledger's outcome stands
                self.repairs.mark(repo_id, f"writing the push at height {result.height} failed: {exc!r}")

    def close(self) -> None:
        self.events.close()
        self.projector.close()
