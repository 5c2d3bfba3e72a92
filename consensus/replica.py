"""The Simplex replica: a deterministic state machine with no I/O.

Messages, timer firings and the current time go in; an `Output` (votes to log,
messages to send, timers to set, blocks finalized) comes out. See
`consensus.interface` for the host's duties. The protocol follows Simplex
(Chan & Pass 2023): one leader per view, notarize / nullify / finalize votes,
2f+1 of a kind form a certificate, and a finalization finalizes the block and
all of its ancestors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from consensus.crypto import Signer, ValidatorSet, Verifier
from consensus.interface import (
    Application,
    Finalized,
    FinalizedStore,
    Output,
    ReplicaConfig,
    Timer,
    TimerKind,
    Verdict,
)
from consensus.messages import (
    MAX_BLOCKS_PER_MESSAGE,
    MAX_CERT_VIEWS_PER_REQUEST,
    MAX_HASHES_PER_REQUEST,
    BlobChunk,
    BlobOffer,
    BlobRequest,
    BlockRequest,
    BlockResponse,
    CertificateMsg,
    CertificateRequest,
    Message,
    Proposal,
    Status,
    SyncRequest,
    SyncResponse,
    TxGossip,
    VoteMsg,
)
from consensus.types import ZERO_HASH, Block, Certificate, Limits, Vote, VoteKind

# Votes further ahead of our view than this are dropped (bounded memory);
# certificates are accepted from any future view because they prove progress.
FUTURE_VOTE_WINDOW = 100
MAX_EVIDENCE = 1_000
SYNC_BYTES_PER_RESPONSE = 4 * 1024 * 1024
REQUEST_RETRY_MS = 500
WANT_EXPIRY_MS = 30_000
# A finalization this many views ahead of our tip is fetched by height-sync rather than hash by hash.
SYNC_GAP_VIEWS = 8


@dataclass
class _ViewState:
    proposal: Block | None = None
    notarize: dict[bytes, dict[int, bytes]] = field(default_factory=dict)
    notarize_by: dict[int, Vote] = field(default_factory=dict)
    finalize: dict[bytes, dict[int, bytes]] = field(default_factory=dict)
    finalize_by: dict[int, Vote] = field(default_factory=dict)
    nullify: dict[int, bytes] = field(default_factory=dict)
    my_notarize: bytes | None = None
    my_nullify: Vote | None = None
    my_finalize: bytes | None = None
    notarization: Certificate | None = None
    nullification: Certificate | None = None
    finalization: Certificate | None = None
    proposed: bool = False
    propose_retry_pending: bool = False


class Replica:
    def __init__(
        self,
        *,
        validators: ValidatorSet,
        signer: Signer,
        app: Application,
        store: FinalizedStore,
        genesis: Block,
        config: ReplicaConfig = ReplicaConfig(),
        limits: Limits = Limits(),
        recovered_votes: Iterable[Vote] = (),
        recovered_blocks: Iterable[Block] = (),
    ) -> None:
        self.validators = validators
        self.signer = signer
        self.me = signer.index
        self.app = app
        self.store = store
        self.genesis = genesis
        self.config = config
        self.limits = limits
        self.verifier = Verifier(validators)
        self.dropped: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.evidence: list[tuple[Vote, Vote]] = []

        last = store.last_height()
        tip = store.get(last) if last > 0 else None
        self.finalized_tip: Block = tip.block if tip else genesis
        self.finalized_proof: Certificate | None = tip.proof if tip else None
        self.blocks: dict[bytes, Block] = {self.finalized_tip.hash: self.finalized_tip}
        self._views: dict[int, _ViewState] = {}
        self.view = self.finalized_tip.view + 1

        for vote in recovered_votes:
            if vote.signer != self.me:
                continue
            vs = self._vs(vote.view)
            if vote.kind == VoteKind.NOTARIZE:
                vs.my_notarize = vote.block
                vs.notarize.setdefault(vote.block, {})[self.me] = vote.signature
                vs.notarize_by[self.me] = vote
                self.view = max(self.view, vote.view)
            elif vote.kind == VoteKind.NULLIFY:
                vs.my_nullify = vote
                vs.nullify[self.me] = vote.signature
                self.view = max(self.view, vote.view)
            else:
                vs.my_finalize = vote.block
                vs.finalize.setdefault(vote.block, {})[self.me] = vote.signature
                vs.finalize_by[self.me] = vote
                self.view = max(self.view, vote.view + 1)

        for b in recovered_blocks:
            if b.height > self.finalized_tip.height:
                self.blocks[b.hash] = b
                rvs = self._views.get(b.view)
                if rvs is not None and rvs.my_notarize == b.hash and rvs.proposal is None:
                    rvs.proposal = b
        self._wanted: dict[bytes, tuple[int, int]] = {}  # block hash -> (first, last request time)
        self._cert_asked: dict[int, int] = {}  # view -> last time we asked peers for its certificate
        self._pending_final: Certificate | None = None
        self._peer_status: dict[int, Status] = {}
        self._sync_inflight: tuple[int, int] | None = None  # (peer, sent at)
        self._last_cert_push: dict[int, int] = {}
        self._out = Output()
        self._now = 0

    # ------------------------------------------------------------------ inspection

    @property
    def finalized_height(self) -> int:
        return self.finalized_tip.height

    def best_peer_height(self) -> int:
        """A finalized height at least one honest peer vouches for: the (f+1)-th highest
        reported, so up to f peers lying about their height cannot move it."""
        heights = sorted((st.finalized_height for st in self._peer_status.values()), reverse=True)
        f = self.validators.f
        return heights[f] if len(heights) > f else 0

    def leader(self, view: int) -> int:
        return self.validators.leader(view)

    # ------------------------------------------------------------------ entry points

    def start(self, now_ms: int) -> Output:
        self._begin(now_ms)
        # Votes recovered from the WAL may never have left before the crash; peers may need them.
        for view in (self.view - 1, self.view):
            for vote in self._my_votes(view):
                self._broadcast(VoteMsg(vote))
        self._enter_view(self.view, force=True)
        if self._vs(self.view).my_nullify is not None:
            self._timer(TimerKind.NULLIFY_RETRY, self.view, self.config.nullify_retry_ms)
        self._timer(TimerKind.STATUS, 0, self.config.status_interval_ms)
        self._broadcast(Status(self.view, self.finalized_height))
        return self._end()

    def on_message(self, sender: int, msg: Message, now_ms: int) -> Output:
        self._begin(now_ms)
        if not 0 <= sender < self.validators.n or sender == self.me:
            self.dropped["unknown_sender"] += 1
            return self._end()
        match msg:
            case Proposal():
                self._on_proposal(sender, msg)
            case VoteMsg(vote):
                self._on_vote(sender, vote)
            case CertificateMsg(cert):
                self._on_certificate(cert, formed=False)
            case BlockRequest(hashes):
                self._on_block_request(sender, hashes)
            case BlockResponse(blocks):
                self._on_block_response(blocks)
            case SyncRequest(from_height, max_blocks):
                self._on_sync_request(sender, from_height, max_blocks)
            case SyncResponse(blocks, proof):
                self._on_sync_response(sender, blocks, proof)
            case Status():
                self._on_status(sender, msg)
            case CertificateRequest(views):
                self._on_certificate_request(sender, views)
            case TxGossip() | BlobOffer() | BlobRequest() | BlobChunk():
                self.dropped["unexpected_message"] += 1
        return self._end()

    def on_timer(self, timer: Timer, now_ms: int) -> Output:
        self._begin(now_ms)
        kind, view = timer.kind, timer.view
        if kind == TimerKind.STATUS:
            self._status_tick()
            self._timer(TimerKind.STATUS, 0, self.config.status_interval_ms)
        elif view != self.view:
            pass  # stale timer for a view we have left
        elif kind in (TimerKind.LEADER, TimerKind.VIEW):
            vs = self._vs(view)
            if kind == TimerKind.VIEW or vs.my_notarize is None:
                if self._nullify(view):  # newly nullified: keep re-sending until the view ends
                    self._timer(TimerKind.NULLIFY_RETRY, view, self.config.nullify_retry_ms)
        elif kind == TimerKind.NULLIFY_RETRY:
            vs = self._vs(view)
            if vs.my_nullify is not None:
                self._broadcast(VoteMsg(vs.my_nullify))
            self._push_entry_certificate(None)
            self._timer(TimerKind.NULLIFY_RETRY, view, self.config.nullify_retry_ms)
        elif kind == TimerKind.PROPOSE_RETRY:
            self._vs(view).propose_retry_pending = False
            self._try_propose()
        return self._end()

    def on_app_ready(self, now_ms: int) -> Output:
        self._begin(now_ms)
        self._try_propose()
        self._try_vote(self.view)
        return self._end()

    # ------------------------------------------------------------------ plumbing

    def _begin(self, now_ms: int) -> None:
        self._now = now_ms
        self._out = Output()

    def _end(self) -> Output:
        out, self._out = self._out, Output()
        return out

    def _send(self, dest: int, msg: Message) -> None:
        self._out.messages.append((dest, msg))

    def _broadcast(self, msg: Message) -> None:
        self._out.messages.append((None, msg))

    def _timer(self, kind: TimerKind, view: int, delay_ms: int) -> None:
        self._out.timers.append(Timer(kind, view, self._now + delay_ms))

    def _my_votes(self, view: int) -> list[Vote]:
        vs = self._views.get(view)
        if vs is None:
            return []
        mine = [vs.notarize_by.get(self.me), vs.my_nullify, vs.finalize_by.get(self.me)]
        return [v for v in mine if v is not None]

    def _vs(self, view: int) -> _ViewState:
        vs = self._views.get(view)
        if vs is None:
            vs = self._views[view] = _ViewState()
        return vs

    def _sign(self, kind: VoteKind, view: int, block: bytes) -> Vote:
        vote = self.signer.vote(kind, view, block)
        self._out.wal.append(vote)
        self.stats[f"votes_signed_{kind.name.lower()}"] += 1
        return vote

    # ------------------------------------------------------------------ views

    def _enter_view(self, view: int, force: bool = False) -> None:
        if view <= self.view and not force:
            return
        self.view = view
        self.stats["views_entered"] += 1
        self._timer(TimerKind.LEADER, view, self.config.leader_timeout_ms)
        self._timer(TimerKind.VIEW, view, self.config.view_timeout_ms)
        self._prune()
        self._try_propose()
        self._try_vote(view)

    def _prune(self) -> None:
        floor = self.finalized_tip.view - self.config.keep_views
        for v in [v for v in self._views if v < floor]:
            del self._views[v]
        if len(self.blocks) > 4 * self.config.keep_views:
            hfloor = self.finalized_height - self.config.keep_views
            vfloor = self.finalized_tip.view
            for h, b in list(self.blocks.items()):
                stale = b.height < hfloor or (b.view <= vfloor and b.height > self.finalized_height)
                if stale and h != self.finalized_tip.hash:
                    del self.blocks[h]

    # ------------------------------------------------------------------ proposing

    @staticmethod
    def _certified(vs: _ViewState | None) -> bytes | None:
        """The block a view certified: its notarization, or its finalization (which implies one)."""
        if vs is None:
            return None
        if vs.notarization is not None:
            return vs.notarization.block
        if vs.finalization is not None:
            return vs.finalization.block
        return None

    def _parent_for(self, view: int) -> Block | None:
        """The block a proposal in `view` must extend: the notarized block of the
        highest earlier view, provided every view in between is nullified."""
        tip = self.finalized_tip
        u = view - 1
        while u > tip.view:
            vs = self._views.get(u)
            certified = self._certified(vs)
            if certified is not None:
                parent = self.blocks.get(certified)
                if parent is None:
                    self._want(certified)
                return parent
            if vs is None or vs.nullification is None:
                self._want_certificate(u)
                return None
            u -= 1
        return tip if u == tip.view else None

    def _pending_chain(self, parent: Block) -> tuple[Block, ...] | None:
        chain: list[Block] = []
        b = parent
        while b.hash != self.finalized_tip.hash:
            if b.height <= self.finalized_height:
                return None
            chain.append(b)
            nxt = self.blocks.get(b.parent)
            if nxt is None:
                self._want(b.parent)
                return None
            b = nxt
        chain.reverse()
        return tuple(chain)

    def _try_propose(self) -> None:
        view = self.view
        if self.leader(view) != self.me:
            return
        vs = self._vs(view)
        if vs.proposed or vs.my_notarize is not None or vs.my_nullify is not None:
            return
        parent = self._parent_for(view)
        pending = self._pending_chain(parent) if parent is not None else None
        if pending is not None and self._out.finalized:
            # Blocks finalized during this very event have not reached the application
            # yet (the host delivers them after we return): they are still "pending" to it.
            pending = tuple(f.block for f in self._out.finalized) + pending
        payload = None
        if parent is not None and pending is not None:
            payload = self.app.build_payload(parent, pending, self._now)
        if parent is None or payload is None:
            if not vs.propose_retry_pending:  # one retry chain per view, however often we get here
                vs.propose_retry_pending = True
                self._timer(TimerKind.PROPOSE_RETRY, view, self.config.propose_retry_ms)
            return
        txs, app_hash = payload
        ts = max(self._now, parent.timestamp_ms + 1)
        block = Block(parent.height + 1, view, parent.hash, ts, self.me, app_hash, txs)
        vs.proposed = True
        vs.proposal = block
        self.blocks[block.hash] = block
        self._out.blocks.append(block)
        vote = self._sign(VoteKind.NOTARIZE, view, block.hash)
        vs.my_notarize = block.hash
        self._broadcast(Proposal(block, vote.signature))
        self.stats["proposals"] += 1
        self._record_vote(vote)

    # ------------------------------------------------------------------ proposals and voting

    def _within_limits(self, block: Block) -> bool:
        lim = self.limits
        return (
            len(block.txs) <= lim.max_block_txs
            and all(len(t) <= lim.max_tx_bytes for t in block.txs)
            and block.size_bytes() <= lim.max_block_bytes
        )

    def _on_proposal(self, sender: int, msg: Proposal) -> None:
        block = msg.block
        view = block.view
        if view < 1 or block.height < 1 or block.proposer != self.leader(view) or sender != block.proposer:
            self.dropped["invalid_proposal"] += 1
            return
        if view <= self.finalized_tip.view or view > self.view + FUTURE_VOTE_WINDOW:
            self.dropped["stale_or_future"] += 1
            return
        if not self._within_limits(block):
            self.dropped["oversized_block"] += 1
            return
        if not self._plausible_height(block):
            self.dropped["invalid_proposal"] += 1
            return
        if not self.verifier.verify_signature(VoteKind.NOTARIZE, view, block.hash, sender, msg.signature):
            self.dropped["bad_signature"] += 1
            return
        vote = Vote(VoteKind.NOTARIZE, view, block.hash, sender, msg.signature)
        vs = self._vs(view)
        if vs.proposal is None:
            vs.proposal = block
            self.blocks[block.hash] = block
        elif vs.proposal.hash != block.hash and block.hash in self._wanted:
            self.blocks[block.hash] = block
        self._resolve_wanted(block.hash)
        self._record_vote(vote)
        self._try_vote(view)

    def _plausible_height(self, block: Block) -> bool:
        """Each view adds at most one block, so a block in view v is at most
        v - (finalized view) heights above the finalized tip; anything else is forged."""
        tip = self.finalized_tip
        return tip.height < block.height <= tip.height + (block.view - tip.view)

    def _check_block(self, block: Block) -> Verdict:
        """Consensus-level validity of `block` as a proposal in its view, then the app's."""
        parent = self.blocks.get(block.parent)
        if parent is None:
            self._want(block.parent)
            return Verdict.WAIT
        if parent.view >= block.view or block.height != parent.height + 1:
            return Verdict.REJECT
        if parent.height < self.finalized_height or (
            parent.height == self.finalized_height and parent.hash != self.finalized_tip.hash
        ):
            return Verdict.REJECT  # would fork the finalized chain
        if parent.hash != self.finalized_tip.hash:
            if self._certified(self._views.get(parent.view)) != parent.hash:
                self._want_certificate(parent.view)
                return Verdict.WAIT  # parent not (yet) known to be notarized
        for u in range(parent.view + 1, block.view):
            uvs = self._views.get(u)
            if uvs is None or uvs.nullification is None:
                self._want_certificate(u)
                return Verdict.WAIT
        if block.timestamp_ms <= parent.timestamp_ms:
            self.dropped["bad_timestamp"] += 1
            return Verdict.REJECT
        if block.timestamp_ms > self._now + self.limits.max_clock_drift_ms:
            self.dropped["bad_timestamp"] += 1
            return Verdict.REJECT
        return self.app.verify_block(block, parent)

    def _try_vote(self, view: int) -> None:
        if view != self.view:
            return
        vs = self._views.get(view)
        if vs is None or vs.proposal is None or vs.my_notarize is not None or vs.my_nullify is not None:
            return
        block = vs.proposal
        verdict = self._check_block(block)
        if verdict == Verdict.WAIT:
            return
        if verdict == Verdict.REJECT:
            self.dropped["invalid_proposal"] += 1
            if self._nullify(view):
                self._timer(TimerKind.NULLIFY_RETRY, view, self.config.nullify_retry_ms)
            return
        self._out.blocks.append(block)
        vote = self._sign(VoteKind.NOTARIZE, view, block.hash)
        vs.my_notarize = block.hash
        self._broadcast(VoteMsg(vote))
        self._record_vote(vote)

    def _nullify(self, view: int) -> bool:
        """Vote nullify in `view` unless we already did or voted finalize there; True if newly cast."""
        vs = self._vs(view)
        if vs.my_nullify is not None or vs.my_finalize is not None:
            return False
        vote = self._sign(VoteKind.NULLIFY, view, ZERO_HASH)
        vs.my_nullify = vote
        self._broadcast(VoteMsg(vote))
        self._record_vote(vote)
        return True

    # ------------------------------------------------------------------ votes and certificates

    def _on_vote(self, sender: int, vote: Vote) -> None:
        if not 0 <= vote.signer < self.validators.n:
            self.dropped["non_validator_vote"] += 1
            return
        if vote.signer != sender:
            self.dropped["relayed_vote"] += 1
            return
        if vote.view <= self.finalized_tip.view - self.config.keep_views or vote.view < 1:
            self.dropped["stale_vote"] += 1
            return
        if vote.view > self.view + FUTURE_VOTE_WINDOW:
            self.dropped["future_vote"] += 1
            return
        if vote.kind == VoteKind.NULLIFY and vote.block != ZERO_HASH:
            self.dropped["malformed_vote"] += 1
            return
        if not self.verifier.verify_vote(vote):
            self.dropped["bad_signature"] += 1
            return
        self._record_vote(vote)

    def _record_vote(self, vote: Vote) -> None:
        vs = self._vs(vote.view)
        s = vote.signer
        if vote.kind == VoteKind.NULLIFY:
            if s in vs.nullify:
                self.dropped["duplicate_vote"] += 1
                return
            vs.nullify[s] = vote.signature
            if len(vs.nullify) >= self.validators.quorum and vs.nullification is None:
                sigs = tuple(sorted(vs.nullify.items()))
                self._on_certificate(Certificate(VoteKind.NULLIFY, vote.view, ZERO_HASH, sigs), formed=True)
            return
        tally, by = (
            (vs.notarize, vs.notarize_by) if vote.kind == VoteKind.NOTARIZE else (vs.finalize, vs.finalize_by)
        )
        prev = by.get(s)
        if prev is not None:
            if prev.block != vote.block:
                self._add_evidence(prev, vote)
            else:
                self.dropped["duplicate_vote"] += 1
            return
        by[s] = vote
        votes = tally.setdefault(vote.block, {})
        votes[s] = vote.signature
        if len(votes) >= self.validators.quorum:
            have = vs.notarization if vote.kind == VoteKind.NOTARIZE else vs.finalization
            if have is None:
                sigs = tuple(sorted(votes.items()))
                self._on_certificate(Certificate(vote.kind, vote.view, vote.block, sigs), formed=True)

    def _add_evidence(self, a: Vote, b: Vote) -> None:
        self.dropped["equivocation"] += 1
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append((a, b))

    def _on_certificate(self, cert: Certificate, formed: bool) -> None:
        view = cert.view
        if view < 1 or (cert.kind == VoteKind.NULLIFY and cert.block != ZERO_HASH):
            self.dropped["malformed_certificate"] += 1
            return
        if view <= self.finalized_tip.view - self.config.keep_views:
            self.dropped["stale_certificate"] += 1
            return
        existing = self._views.get(view)
        if existing is not None:
            current = {
                VoteKind.NOTARIZE: existing.notarization,
                VoteKind.NULLIFY: existing.nullification,
                VoteKind.FINALIZE: existing.finalization,
            }[cert.kind]
            if current is not None:
                if not formed:
                    self.stats["duplicate_certificate"] += 1
                return
        # Verify before allocating anything for the view, so forged certificates cost no memory.
        if not formed and not self.verifier.verify_certificate(cert):
            self.dropped["bad_certificate"] += 1
            return
        vs = self._vs(view)
        if not formed and cert.kind != VoteKind.NULLIFY:
            by = vs.notarize_by if cert.kind == VoteKind.NOTARIZE else vs.finalize_by
            for s, sig in cert.signatures:
                prev = by.get(s)
                if prev is not None and prev.block != cert.block:
                    self._add_evidence(prev, Vote(cert.kind, view, cert.block, s, sig))
        if formed:
            self._broadcast(CertificateMsg(cert))
            self.stats[f"certificates_formed_{cert.kind.name.lower()}"] += 1
        if cert.kind == VoteKind.NOTARIZE:
            vs.notarization = cert
            if cert.block not in self.blocks:
                self._want(cert.block)
            if vs.my_nullify is None and vs.my_finalize is None and view > self.finalized_tip.view:
                vote = self._sign(VoteKind.FINALIZE, view, cert.block)
                vs.my_finalize = cert.block
                self._broadcast(VoteMsg(vote))
                self._record_vote(vote)
            self._enter_view(view + 1)
        elif cert.kind == VoteKind.NULLIFY:
            vs.nullification = cert
            self._enter_view(view + 1)
        else:
            vs.finalization = cert
            if view > self.finalized_tip.view:
                if self._pending_final is None or self._pending_final.view < view:
                    self._pending_final = cert
                self._advance_finalized()
            self._enter_view(view + 1)
        # A new certificate may complete a parent chain a waiting proposal needs.
        self._try_propose()
        self._try_vote(self.view)

    def _advance_finalized(self) -> None:
        cert = self._pending_final
        if cert is None:
            return
        if cert.view <= self.finalized_tip.view:
            self._pending_final = None
            return
        chain: list[Block] = []
        h = cert.block
        while h != self.finalized_tip.hash:
            b = self.blocks.get(h)
            if b is None:
                if cert.view - self.finalized_tip.view > SYNC_GAP_VIEWS:
                    self._request_sync(None)
                self._want(h)
                return
            if b.height <= self.finalized_height:
                self.dropped["conflicting_finalization"] += 1
                self._pending_final = None
                return
            chain.append(b)
            h = b.parent
        for b in reversed(chain):
            self._finalize(b, cert)
        self._pending_final = None

    def _finalize(self, block: Block, proof: Certificate) -> None:
        self.finalized_tip = block
        self.finalized_proof = proof
        self._out.finalized.append(Finalized(block, proof))
        self.stats["blocks_finalized"] += 1

    # ------------------------------------------------------------------ certificate fetching

    def _want_certificate(self, view: int) -> None:
        """Ask peers for a view's certificate we lack (lost on a crash, or missed while cut off)."""
        last = self._cert_asked.get(view)
        if last is not None and self._now - last < REQUEST_RETRY_MS:
            return
        self._cert_asked[view] = self._now
        if len(self._cert_asked) > 4 * MAX_CERT_VIEWS_PER_REQUEST:
            floor = self.finalized_tip.view
            self._cert_asked = {v: t for v, t in self._cert_asked.items() if v > floor}
        self._broadcast(CertificateRequest((view,)))

    def _on_certificate_request(self, sender: int, views: tuple[int, ...]) -> None:
        for view in views[:MAX_CERT_VIEWS_PER_REQUEST]:
            vs = self._views.get(view)
            if vs is None:
                continue
            for cert in (vs.notarization, vs.nullification, vs.finalization):
                if cert is not None:
                    self._send(sender, CertificateMsg(cert))

    # ------------------------------------------------------------------ block fetching

    def _want(self, h: bytes) -> None:
        if h in self.blocks or h in self._wanted:
            return
        self._wanted[h] = (self._now, self._now)
        self._broadcast(BlockRequest((h,)))

    def _resolve_wanted(self, h: bytes) -> None:
        self._wanted.pop(h, None)

    def _on_block_request(self, sender: int, hashes: tuple[bytes, ...]) -> None:
        found: list[Block] = []
        size = 0
        for h in dict.fromkeys(hashes[:MAX_HASHES_PER_REQUEST]):  # duplicates removed, order kept
            b = self.blocks.get(h)
            if b is None:
                continue
            size += b.size_bytes()
            if found and size > SYNC_BYTES_PER_RESPONSE:
                break
            found.append(b)
        if found:
            self._send(sender, BlockResponse(tuple(found)))

    def _on_block_response(self, blocks: tuple[Block, ...]) -> None:
        useful = False
        for b in blocks:
            if b.hash in self.blocks:
                continue
            if b.hash not in self._wanted:
                self.dropped["unsolicited_block"] += 1
                continue
            if not self._within_limits(b):
                self.dropped["oversized_block"] += 1
                continue
            self.blocks[b.hash] = b
            self._resolve_wanted(b.hash)
            useful = True
            # Chase the parent of a block we asked for, within a bounded distance of our
            # tip; anything further away is caught up by height sync instead.
            gap = b.height - self.finalized_height
            if 1 < gap <= 4 * self.config.keep_views and b.parent not in self.blocks:
                self._want(b.parent)
        if useful:
            self._advance_finalized()
            self._try_propose()
            self._try_vote(self.view)

    # ------------------------------------------------------------------ height sync

    def _request_sync(self, peer: int | None) -> None:
        if self._sync_inflight is not None and self._now - self._sync_inflight[1] < 2 * REQUEST_RETRY_MS:
            return
        if peer is None:
            ahead = [p for p, st in self._peer_status.items() if st.finalized_height > self.finalized_height]
            if not ahead:
                candidates = [p for p in range(self.validators.n) if p != self.me]
                ahead = candidates
            peer = ahead[(self._now // REQUEST_RETRY_MS) % len(ahead)]
        self._sync_inflight = (peer, self._now)
        self._send(peer, SyncRequest(self.finalized_height + 1, self.config.sync_batch))

    def _on_sync_request(self, sender: int, from_height: int, max_blocks: int) -> None:
        last = self.store.last_height()
        if from_height < 1 or from_height > last:
            return
        limit = min(max(max_blocks, 1), MAX_BLOCKS_PER_MESSAGE)
        blocks: list[Block] = []
        size = 0
        proof: Certificate | None = None
        h = from_height
        while h <= last and len(blocks) < MAX_BLOCKS_PER_MESSAGE:
            f = self.store.get(h)
            if f is None:
                break
            blocks.append(f.block)
            size += f.block.size_bytes()
            if f.proof.block == f.block.hash:
                proof = f.proof
                if len(blocks) >= limit or size >= SYNC_BYTES_PER_RESPONSE:
                    break
            h += 1
        if proof is None:
            return
        while blocks and blocks[-1].hash != proof.block:
            blocks.pop()
        self._send(sender, SyncResponse(tuple(blocks), proof))

    def _on_sync_response(self, sender: int, blocks: tuple[Block, ...], proof: Certificate | None) -> None:
        if self._sync_inflight is not None and self._sync_inflight[0] == sender:
            self._sync_inflight = None
        if proof is None or not blocks:
            return
        if proof.kind != VoteKind.FINALIZE or proof.block != blocks[-1].hash:
            self.dropped["bad_sync_response"] += 1
            return
        prev = self.finalized_tip
        start = next((i for i, b in enumerate(blocks) if b.parent == prev.hash), None)
        if start is None:
            return  # stale or not linking to our tip
        for b in blocks[start:]:
            if b.parent != prev.hash or b.height != prev.height + 1 or not self._within_limits(b):
                self.dropped["bad_sync_response"] += 1
                return
            prev = b
        if not self.verifier.verify_certificate(proof):
            self.dropped["bad_certificate"] += 1
            return
        for b in blocks[start:]:
            self.blocks[b.hash] = b
            self._resolve_wanted(b.hash)
            self._finalize(b, proof)
        self._vs(proof.view).finalization = proof
        self.stats["blocks_synced"] += len(blocks) - start
        peer_st = self._peer_status.get(sender)
        if peer_st is not None and peer_st.finalized_height > self.finalized_height:
            self._request_sync(sender)
        self._advance_finalized()
        if self.view <= self.finalized_tip.view:
            self._enter_view(self.finalized_tip.view + 1)
        else:
            self._try_propose()
            self._try_vote(self.view)

    # ------------------------------------------------------------------ status and catch-up

    def _status_tick(self) -> None:
        self._broadcast(Status(self.view, self.finalized_height))
        for h, (first, last) in list(self._wanted.items()):
            if self._now - first >= WANT_EXPIRY_MS:
                del self._wanted[h]  # re-wanted later if a certificate still needs it
            elif self._now - last >= REQUEST_RETRY_MS:
                self._wanted[h] = (first, self._now)
                self._broadcast(BlockRequest((h,)))
        if any(st.finalized_height > self.finalized_height for st in self._peer_status.values()):
            self._request_sync(None)
        self._advance_finalized()

    def _on_status(self, sender: int, st: Status) -> None:
        self._peer_status[sender] = st
        if st.finalized_height > self.finalized_height + 1 or (
            st.finalized_height > self.finalized_height and st.view > self.view + 1
        ):
            self._request_sync(sender)
        if st.view < self.view:
            self._push_entry_certificate(sender, since=st.view)

    def _push_entry_certificate(self, dest: int | None, since: int | None = None) -> None:
        """Send the certificates that moved us into our current view (and the latest
        finalization) so a peer stuck in an older view can follow."""
        if dest is not None:
            last = self._last_cert_push.get(dest, -(10**9))
            if self._now - last < self.config.status_interval_ms // 2:
                return
            self._last_cert_push[dest] = self._now
        lo = max(since if since is not None else self.view - 1, self.view - 16, 1)
        msgs: list[Message] = []
        for u in range(lo, self.view):
            vs = self._views.get(u)
            if vs is None:
                continue
            if vs.notarization is not None:
                msgs.append(CertificateMsg(vs.notarization))
            elif vs.nullification is not None:
                msgs.append(CertificateMsg(vs.nullification))
            else:
                # No certificate (e.g. lost in a crash): our own votes may complete the peer's.
                msgs.extend(VoteMsg(v) for v in self._my_votes(u))
        if self.finalized_proof is not None:
            msgs.append(CertificateMsg(self.finalized_proof))
        for m in msgs:
            if dest is None:
                self._broadcast(m)
            else:
                self._send(dest, m)
