"""Native ledger routes: the event stream with positions, and transaction receipts."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request

from adapters.ledger import LedgerHost
from api.auth import authenticate, require, require_site_admin_scope
from api.errors import ApiError
from api.services import services
from api.tx_view import raw_visible, tx_of, viewer_of

router = APIRouter(tags=["ledger"])

MAX_EVENTS_PAGE = 1000
_TX_ID = re.compile(r"[0-9a-f]{64}")


def _ledger(request: Request) -> LedgerHost:
    ledger = services(request).ledger
    return ledger


@router.get("/api/v1/events")
async def events(
    request: Request,
    after: int = Query(0, ge=0, le=2**62, description="Return events with a position greater than this"),
    limit: int = Query(100, ge=1, le=MAX_EVENTS_PAGE),
) -> dict[str, Any]:
    """Recorded domain events in log order; resume with `after` = the last `position` you saw.

    Site administrators only: the raw stream includes private repositories and emails.
    """
    ledger = _ledger(request)
    caller = require(authenticate(ledger.state, request.headers.get("authorization")))
    if not caller.user.site_admin:
        raise ApiError(403, "the event stream is available to site administrators")
    require_site_admin_scope(request, ledger, caller)
    items = ledger.events.events_after(after, limit)
    out = [{"position": pos, **event.model_dump()} for pos, event in items]
    return {"events": out, "next_after": out[-1]["position"] if out else after}


@router.get("/api/v1/receipts/{tx_id}")
async def receipt(request: Request, tx_id: str) -> dict[str, Any]:
    """The outcome of a transaction once this node has applied it.

    Only for callers who may see the transaction (docs/api.md, "Who can see a
    transaction"); to anyone else it is 404 exactly like an unknown id.
    """
    if not _TX_ID.fullmatch(tx_id):
        raise ApiError(422, "tx_id must be 64 lowercase hex characters")
    ledger = _ledger(request)
    caller = authenticate(ledger.state, request.headers.get("authorization"))
    found = ledger.receipt(tx_id)
    host = services(request).host
    if found is None or not raw_visible(ledger, viewer_of(caller), tx_of(host, found), found):
        raise ApiError(404, f"no receipt for {tx_id} on this node (not applied here yet, or unknown)")
    return found.to_json()


@router.get("/api/v1/ledger")
async def ledger_status(request: Request) -> dict[str, Any]:
    """Applied height, app hash, and execution counters of this node's ledger."""
    return _ledger(request).status()
