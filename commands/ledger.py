"""Block execution: the pure function every node runs over each finalized block.

`execute_block` forks the state, runs each transaction (decode, chain id, replay,
authentication, handler), records the events with deterministic metadata and returns
the new state, the events, one receipt per transaction and the app hash. Nothing here
reads a clock, the environment or randomness, so equal inputs give equal bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from commands.auth import authenticate
from commands.decision import BAD_TRANSACTION, CONFLICT, INTERNAL, OK, Accepted, HandlerContext, Rejection
from commands.envelope import EnvelopeError, NodeAttestation, Transaction, decode_transaction
from commands.git_view import GitView, GitViewError
from commands.handlers import decide, result_of
from domain.canonical import canonical_json
from domain.events import Event, RecordedEvent, TokenIssued, UserCreated
from domain.evolve import apply_event, finish_block, mark_applied, start_chain
from domain.ids import derive_id
from domain.names import email_error, login_error
from domain.rules import LATEST, Rules
from domain.state import VERSIONS, LedgerState

APP_HASH_DOMAIN = b"stele/apphash/v1"
#: The receipt message of a transaction whose id was already applied (a replay).
DUPLICATE_MESSAGE = "duplicate transaction"
GENESIS_PREV_APP_HASH = b"\x00" * 32


@dataclass(frozen=True)
class BlockContext:
    """What the block says about itself; validators are Ed25519 public keys by index.

    `git` is the node's oracle over git objects for the pushes in this block (see
    `commands.git_view` for what it must answer from). Without one, every push is
    refused with 503 "git objects unavailable"; other commands don't need it.
    """

    chain_id: str
    height: int
    timestamp_ms: int
    validators: tuple[bytes, ...]
    git: GitView | None = field(default=None, compare=False)
    #: The protocol rules at this height (`ChainRules.at(height)`).
    rules: Rules = LATEST


@dataclass(frozen=True)
class Receipt:
    """The outcome of one transaction; `result` holds ids it created (e.g. {"repo_id": ...})
    or, for a push (accepted or refused), the per-ref outcome {"refs": [...]}."""

    tx_id: str
    height: int
    index: int
    ok: bool
    code: int
    message: str
    events: int
    result: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "tx_id": self.tx_id,
            "height": self.height,
            "index": self.index,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "events": self.events,
            "result": self.result,
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> Receipt:
        return Receipt(
            tx_id=data["tx_id"],
            height=data["height"],
            index=data["index"],
            ok=data["ok"],
            code=data["code"],
            message=data["message"],
            events=data["events"],
            result=dict(data["result"]),
        )


@dataclass(frozen=True)
class BlockResult:
    height: int
    events: tuple[RecordedEvent, ...]
    receipts: tuple[Receipt, ...]
    app_hash: bytes
    state: LedgerState
    #: The canonical bytes of `events` and `receipts`, as the app hash covered them (so the
    #: event store writes the very bytes that were hashed, without encoding them again).
    event_bytes: tuple[bytes, ...] = ()
    receipt_bytes: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class GenesisAdmin:
    """The bootstrap site administrator, and optionally the hash of their first API token."""

    login: str
    email: str
    token_hash: str | None = None
    token_id: str | None = None  # derived from the genesis when None
    scopes: tuple[str, ...] = ()


def encode_event(event: RecordedEvent) -> bytes:
    """The canonical bytes of a recorded event (what the app hash covers and what to store)."""
    return canonical_json(event.model_dump())


def app_hash_step(
    prev: bytes, height: int, receipts: Sequence[Receipt], events: Sequence[RecordedEvent]
) -> bytes:
    """sha256 over the domain, the previous app hash, the height and every receipt and event."""
    return app_hash_of(prev, height, encode_receipts(receipts), [encode_event(e) for e in events])


def encode_receipts(receipts: Sequence[Receipt]) -> list[bytes]:
    return [canonical_json(r.to_json()) for r in receipts]


def app_hash_of(prev: bytes, height: int, receipts: Sequence[bytes], events: Sequence[bytes]) -> bytes:
    """`app_hash_step` over receipts and events already in their canonical bytes."""
    h = hashlib.sha256(APP_HASH_DOMAIN)
    h.update(prev)
    h.update(height.to_bytes(8, "big"))
    for items in (receipts, events):
        h.update(len(items).to_bytes(4, "big"))
        for item in items:
            h.update(len(item).to_bytes(4, "big"))
            h.update(item)
    return h.digest()


class _Replayed(Exception):
    """Internal signal: these exact bytes were applied before."""


class _Recorder:
    """Turns a transaction's events into RecordedEvents and folds them into the state."""

    def __init__(self, state: LedgerState, height: int, timestamp_ms: int) -> None:
        self.state = state
        self.height = height
        self.timestamp_ms = timestamp_ms
        self.events: list[RecordedEvent] = []

    def record(self, events: Sequence[Event], tx_id: str, tx_index: int, actor_id: str) -> None:
        for event_index, event in enumerate(events):
            aggregate_id = event.aggregate_id()
            version = self.state.version(aggregate_id) + 1
            self.events.append(
                RecordedEvent(
                    aggregate_id=aggregate_id,
                    version=version,
                    type=event.type,
                    data=event.model_dump(),
                    height=self.height,
                    tx_id=tx_id,
                    tx_index=tx_index,
                    event_index=event_index,
                    timestamp_ms=self.timestamp_ms,
                    actor=actor_id,
                )
            )
            self.state.put(VERSIONS, aggregate_id, version)
            apply_event(self.state, event)


class HandlerFault(Exception):
    """A handler raised instead of deciding: a bug, or a fault of this node (memory, a library).

    Only a handler's decision (events or a rejection) may become a receipt: an exception
    may be this node's alone, and recording it would fork this node from the others. The
    node stops, naming the transaction and the cause. (`GitViewError`, a fault in the
    git objects this node holds, propagates as it is: the node fetches them again.)
    """

    def __init__(self, tx_id: str, cause: BaseException) -> None:
        super().__init__(f"the handler of transaction {tx_id} raised {type(cause).__name__}: {cause}")
        self.tx_id = tx_id
        self.cause = cause


def _run_handler(state: LedgerState, tx: Transaction, ctx: HandlerContext) -> Accepted | Rejection:
    """The handler's decision, as events with a result or a rejection.

    From protocol version 2 any exception propagates (as `HandlerFault`, or `GitViewError`):
    it is not an outcome. Version 1 turned one into a 500 receipt, and still does when its
    blocks are replayed.
    """
    try:
        decision = decide(state, tx, ctx)
    except GitViewError:
        raise
    except Exception as e:
        if ctx.rules.version >= 2:
            raise HandlerFault(ctx.tx_id, e) from e
        return Rejection(INTERNAL, f"internal error in handler: {type(e).__name__}")
    if isinstance(decision, Rejection):
        return decision
    if isinstance(decision, list):
        decision = Accepted(decision, result_of(decision))
    if not all(isinstance(e, Event) for e in decision.events):
        if ctx.rules.version >= 2:
            raise HandlerFault(ctx.tx_id, TypeError("a handler returned something that is not an event"))
        return Rejection(INTERNAL, "internal error in handler: not an event")
    return decision


def execute_block(
    state: LedgerState, prev_app_hash: bytes, ctx: BlockContext, txs: Sequence[bytes]
) -> BlockResult:
    """Run a block on a fork of `state` (which is left untouched) and return the result.

    `prev_app_hash` is normally `state.app_hash`. Raises ValueError only for wiring
    mistakes (wrong chain, height not state.height + 1); bad transactions get receipts.
    """
    if ctx.chain_id != state.chain_id:
        raise ValueError(f"block for chain {ctx.chain_id!r} on a state of chain {state.chain_id!r}")
    if ctx.height != state.height + 1:
        raise ValueError(f"block height {ctx.height} does not follow state height {state.height}")
    fork = state.fork()
    recorder = _Recorder(fork, ctx.height, ctx.timestamp_ms)
    receipts: list[Receipt] = []
    for index, raw in enumerate(txs):
        tx_id = hashlib.sha256(raw).hexdigest()
        first_event = len(recorder.events)
        outcome: Accepted | Rejection
        actor_id = ""
        try:
            # Replays first: any bytes seen before, valid or not, get the duplicate receipt.
            if fork.is_applied(tx_id):
                raise _Replayed
            tx = decode_transaction(raw)
        except _Replayed:
            outcome = Rejection(CONFLICT, DUPLICATE_MESSAGE)
        except EnvelopeError as e:
            outcome = Rejection(BAD_TRANSACTION, str(e))
        else:
            if tx.chain_id != ctx.chain_id:
                outcome = Rejection(BAD_TRANSACTION, f"transaction is for chain {tx.chain_id!r}")
            else:
                actor = authenticate(fork, tx, ctx.validators)
                if isinstance(actor, Rejection):
                    outcome = actor
                else:
                    actor_id = actor.user_id
                    node: int | None = None
                    token_scopes: tuple[str, ...] | None = None
                    if isinstance(tx.auth, NodeAttestation):
                        node = tx.auth.node
                        token = fork.token_by_id(tx.auth.token_id)  # authenticate found it
                        token_scopes = token.scopes if token is not None else ()
                    hctx = HandlerContext(
                        tx_id,
                        ctx.height,
                        ctx.timestamp_ms,
                        actor,
                        ctx.git,
                        node,
                        ctx.rules,
                        token_scopes=token_scopes,
                    )
                    outcome = _run_handler(fork, tx, hctx)
        if isinstance(outcome, Rejection):
            receipts.append(
                Receipt(
                    tx_id, ctx.height, index, False, outcome.code, outcome.message, 0, dict(outcome.result)
                )
            )
        else:
            recorder.record(outcome.events, tx_id, index, actor_id)
            count = len(recorder.events) - first_event
            receipts.append(
                Receipt(tx_id, ctx.height, index, True, OK, outcome.message, count, dict(outcome.result))
            )
        mark_applied(fork, tx_id)
    event_bytes = tuple(encode_event(e) for e in recorder.events)
    receipt_bytes = tuple(encode_receipts(receipts))
    app_hash = app_hash_of(prev_app_hash, ctx.height, receipt_bytes, event_bytes)
    finish_block(fork, ctx.height, app_hash)
    return BlockResult(
        ctx.height, tuple(recorder.events), tuple(receipts), app_hash, fork, event_bytes, receipt_bytes
    )


def precheck_transaction(state: LedgerState, ctx: BlockContext, raw: bytes) -> Receipt:
    """What the transaction would get if it were the only one in the next block (state untouched).

    The API uses it to reject early; the final answer is the receipt at apply time.
    """
    next_ctx = replace(ctx, chain_id=state.chain_id, height=state.height + 1)
    return execute_block(state, state.app_hash, next_ctx, [raw]).receipts[0]


def genesis_tx_id(
    chain_id: str, admin: GenesisAdmin | None, genesis_time_ms: int, validators: Sequence[bytes]
) -> str:
    """A stand-in transaction id for the genesis events (their ids derive from it)."""
    spec = {
        "chain_id": chain_id,
        "genesis_time_ms": genesis_time_ms,
        "validators": [v.hex() for v in validators],
        "admin": None
        if admin is None
        else {
            "login": admin.login,
            "email": admin.email,
            "token_hash": admin.token_hash,
            "token_id": admin.token_id,
            "scopes": list(admin.scopes),
        },
    }
    return hashlib.sha256(b"stele/genesis/v1/" + canonical_json(spec)).hexdigest()


def genesis_state(
    chain_id: str, admin: GenesisAdmin | None, genesis_time_ms: int, validators: Sequence[bytes]
) -> BlockResult:
    """Height 0: a new base state holding the bootstrap site admin and their token hash."""
    state = LedgerState()
    start_chain(state, chain_id)
    gid = genesis_tx_id(chain_id, admin, genesis_time_ms, validators)
    events: list[Event] = []
    if admin is not None:
        for problem in (login_error(admin.login), email_error(admin.email)):
            if problem:
                raise ValueError(f"genesis admin: {problem}")
        user_id = derive_id(gid, 0)
        events.append(UserCreated(user_id=user_id, login=admin.login, email=admin.email, site_admin=True))
        if admin.token_hash is not None:
            token_hash = admin.token_hash
            if len(token_hash) != 64 or token_hash.strip("0123456789abcdef"):
                raise ValueError("genesis admin: token_hash must be 64 lowercase hex characters")
            events.append(
                TokenIssued(
                    user_id=user_id,
                    token_id=admin.token_id or derive_id(gid, 1),
                    token_hash=token_hash,
                    scopes=list(admin.scopes),
                    note="genesis",
                )
            )
    recorder = _Recorder(state, 0, genesis_time_ms)
    recorder.record(events, gid, 0, "")
    app_hash = app_hash_step(GENESIS_PREV_APP_HASH, 0, (), recorder.events)
    finish_block(state, 0, app_hash)
    return BlockResult(0, tuple(recorder.events), (), app_hash, state)
