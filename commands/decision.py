"""What a handler sees (`HandlerContext`) and what it may answer (events or a `Rejection`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from commands.git_view import GitView
from domain.events import Event
from domain.ids import derive_id
from domain.records import User
from domain.rules import LATEST, Rules

OK = 200
BAD_TRANSACTION = 400  # undecodable envelope, wrong chain, unknown kind
UNAUTHORIZED = 401  # unknown or revoked token, unknown key, bad signature
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409
TOO_LARGE = 413
INVALID = 422
INTERNAL = 500
UNAVAILABLE = 503  # the node cannot answer a command's git questions (no GitView wired in)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A command that is refused; the code follows HTTP so the API can pass it through.

    `result` goes into the receipt like an accepted command's result (e.g. a refused
    push's per-ref reasons); it is empty for most rejections.
    """

    code: int
    message: str
    result: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Accepted:
    """Events with a receipt result of the handler's own, for outcomes the events alone do not
    tell (e.g. a push that updated some refs and refused others, each with its reason)."""

    events: list[Event]
    result: dict[str, Any]
    message: str = "ok"


Decision = list[Event] | Accepted | Rejection


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """Everything a handler may know beyond the state: the transaction's identity and the block."""

    tx_id: str  # hex
    height: int
    timestamp_ms: int
    actor: User  # the authenticated actor
    git: GitView | None = None  # git objects of pushes (see commands.git_view); None: unavailable
    #: Validator index when a node attested the transaction (it received the request itself),
    #: None when the user signed it.
    attested_by: int | None = None
    #: The protocol rules of this block's height (see `domain.rules`).
    rules: Rules = LATEST
    #: The scopes of the API token a node attested the actor with; None when the user signed
    #: the transaction with their own key, which acts with the user's full authority.
    token_scopes: tuple[str, ...] | None = None

    def new_id(self, n: int) -> str:
        """The n-th id created by this transaction (uuid5 of tx id and n): the same on every node."""
        return derive_id(self.tx_id, n)


def not_found(what: str = "Not Found") -> Rejection:
    return Rejection(NOT_FOUND, what)


def forbidden(message: str) -> Rejection:
    return Rejection(FORBIDDEN, message)
