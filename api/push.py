"""A `git push` as a ledger command: the `RefDecider` behind `git-receive-pack`.

`adapters.git.receive.ReceivePack` has already validated and quarantined the pack. Here the node
offers the pack to the other validators (they fetch it by digest, and will not vote for
a block naming it before they hold it), turns the ref updates into a `git.push_refs`
transaction and waits for its receipt. The ledger decides at apply time on every node:
compare-and-swap, fast-forward, branch protection, permission, all refs or none. The
receipt's per-ref outcome becomes git's `ok <ref>` / `ng <ref> <reason>`.

Every wire update carries `force: true`: as with `git receive-pack`'s defaults, a
non-fast-forward update the client chose to send is allowed unless branch protection
forbids it (the git client itself refuses non-fast-forward pushes without `--force`).
Compare-and-swap still applies: a push based on a stale ref value always fails.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from adapters.git.packs import ReceivedPack
from adapters.git.protocol import RefUpdate
from adapters.git.receive import PushResult, RefDecider
from adapters.git.store import GitStore
from api.auth import Caller
from api.errors import ApiError
from api.gateway import CommandGateway
from commands.availability import PUSH_KIND
from commands.git_view import GitViewError
from commands.ledger import Receipt
from domain.events import ZERO_SHA
from domain.records import Repo

log = logging.getLogger(__name__)

#: Finality of a push waits at least this long; large packs get longer (peers must fetch them).
PUSH_TIMEOUT_S = 60.0
PUSH_TIMEOUT_BYTES_PER_S = 4 * 1024 * 1024
#: How long a push waits (at least) for a quorum of validators to hold its pack before it is ordered.
REPLICATE_WAIT_S = 10.0


class PushService:
    """Decides pushes through the ledger: the `RefDecider` behind every receive-pack request."""

    def __init__(
        self,
        gateway: CommandGateway,
        store: GitStore,
        offer_pack: Callable[[str], None] | None = None,
        replicated: Callable[[str, int, float], Awaitable[bool]] | None = None,
    ) -> None:
        """`offer_pack(digest)` tells the other validators a pack is here; `replicated(digest,
        peers, timeout)` waits until that many of them hold it (False on timeout)."""
        self.gateway = gateway
        self.store = store
        self.offer_pack = offer_pack
        self.replicated = replicated

    def decider(self, caller: Caller, repo: Repo) -> RefDecider:
        """How `caller`'s push to `repo` is decided."""

        async def decide(updates: Sequence[RefUpdate], pack: ReceivedPack | None, atomic: bool) -> PushResult:
            return await self.push(caller, repo, updates, pack, atomic)

        return decide

    async def push(
        self,
        caller: Caller,
        repo: Repo,
        updates: Sequence[RefUpdate],
        pack: ReceivedPack | None,
        atomic: bool = False,
    ) -> PushResult:
        digest = pack.digest if pack is not None else ""
        payload: dict[str, Any] = {
            "owner": repo.owner_login,
            "repo": repo.name,
            "pack_digest": digest,
            "updates": [
                {"ref": u.ref, "old": u.old or ZERO_SHA, "new": u.new or ZERO_SHA, "force": True}
                for u in updates
            ],
        }
        ledger = self.gateway.ledger
        if atomic and ledger.rules.at(ledger.height + 1).version >= 2:
            payload["atomic"] = True
        gateway = self.gateway
        raw = gateway.build(caller, PUSH_KIND, payload)
        try:
            early = await gateway.precheck(raw)
        except GitViewError as exc:
            log.error("push precheck could not read the repository's packs: %s", exc)
            return PushResult.every(
                updates, "this node is missing objects of the repository; try another node"
            )
        except ApiError as exc:
            return PushResult.every(updates, exc.message)
        if not early.ok:
            if pack is not None and pack.created:
                self.store.discard_pack(digest)  # never named by a transaction: nobody needs it
            return _verdicts(updates, early, final=False)
        size = pack.size if pack is not None else 0
        if digest and self.offer_pack is not None:
            self.offer_pack(digest)  # the other validators start fetching it
            await self._until_replicated(digest, size)
        timeout = PUSH_TIMEOUT_S + size / PUSH_TIMEOUT_BYTES_PER_S
        try:
            receipt = await gateway.outcome(raw, timeout)
        except ApiError as exc:
            return PushResult.every(updates, exc.message)
        return _verdicts(updates, receipt, final=True)

    async def _until_replicated(self, digest: str, size: int) -> None:
        """Order the push once a quorum of validators holds its pack (bounded wait).

        A block naming a pack cannot be voted for by a validator that lacks it; proposed too
        early, it stalls its view (and every transaction behind it) while the pack is
        fetched. Waiting here keeps that cost on this one push. If peers are slow or down,
        the push is ordered anyway after the wait, and data availability still holds.
        """
        if self.replicated is None:
            return
        peers = self.gateway.host.validators.quorum - 1
        if peers <= 0:
            return
        wait = min(REPLICATE_WAIT_S + size / PUSH_TIMEOUT_BYTES_PER_S, PUSH_TIMEOUT_S / 2)
        if not await self.replicated(digest, peers, wait):
            log.warning(
                "pack %s: fewer than %d validators hold it after %.0f s; ordering the push anyway",
                digest[:16],
                peers,
                wait,
            )


def _verdicts(updates: Sequence[RefUpdate], receipt: Receipt, *, final: bool) -> PushResult:
    """The receipt's per-ref outcome; a refusal without one (e.g. permission) applies to every ref."""
    refs = receipt.result.get("refs")
    verdicts: list[tuple[str, str | None]] = []
    if isinstance(refs, list) and refs:
        by_ref = {str(r.get("ref")): r for r in refs if isinstance(r, dict)}
        for u in updates:
            r = by_ref.get(u.ref)
            if r is None:
                verdicts.append((u.ref, receipt.message if not receipt.ok else "no result for this ref"))
            else:
                verdicts.append((u.ref, None if r.get("ok") else str(r.get("reason") or receipt.message)))
    elif receipt.ok:
        verdicts.extend((u.ref, None) for u in updates)
    else:
        verdicts.extend((u.ref, receipt.message) for u in updates)
    return PushResult(tuple(verdicts), receipt.height if final else None)
