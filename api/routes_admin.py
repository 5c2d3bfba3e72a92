"""Node operator routes (site administrators): repairing this node's copies of repositories.

These act on one node's derived state only (its bare repositories), never on the ledger,
so they need no transaction: every node repairs its own copy from the same log.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from adapters.git.repair import Repair
from adapters.ledger import LedgerHost
from api.auth import authenticate, require, require_site_admin_scope
from api.errors import ApiError
from api.services import services

router = APIRouter(tags=["admin"])

#: How long `POST .../repair` waits for the rebuild before answering "pending".
REPAIR_WAIT_S = 60.0


def _admin_ledger(request: Request) -> LedgerHost:
    ledger = services(request).ledger
    caller = require(authenticate(ledger.state, request.headers.get("authorization")))
    if not caller.user.site_admin:
        raise ApiError(403, "repairs are available to site administrators")
    require_site_admin_scope(request, ledger, caller)
    if ledger.repairs is None:
        raise ApiError(503, "git is not enabled on this node")
    return ledger


def _describe(ledger: LedgerHost, entry: Repair) -> dict[str, Any]:
    repo = ledger.state.repo(entry.repo_id)
    return {
        "repo_id": entry.repo_id,
        "full_name": repo.full_name if repo is not None else None,
        "reason": entry.reason,
        "attempts": entry.attempts,
        "last_error": entry.last_error or None,
        "waiting_s": round(time.monotonic() - entry.since, 1),
    }


@router.get("/api/v1/admin/repairs")
async def list_repairs(request: Request) -> dict[str, Any]:
    """The repositories this node is rebuilding from the ledger, and why."""
    ledger = _admin_ledger(request)
    assert ledger.repairs is not None
    return {"repairs": [_describe(ledger, r) for r in ledger.repairs.pending()]}


@router.post("/api/v1/admin/repos/{owner}/{repo}/repair")
async def repair_repo(request: Request, owner: str, repo: str) -> dict[str, Any]:
    """Rebuild this node's copy of a repository from the ledger now, and wait for it (bounded)."""
    ledger = _admin_ledger(request)
    repairs = ledger.repairs
    assert repairs is not None
    record = ledger.state.repo_by_name(owner, repo)
    if record is None:
        raise ApiError(404, "Not Found")
    if not repairs.needs_repair(record.repo_id):
        repairs.mark(record.repo_id, "an operator asked for a rebuild")
    repairs.wake(record.repo_id)
    await repairs.wait_repaired(record.repo_id, REPAIR_WAIT_S)
    pending = next((r for r in repairs.pending() if r.repo_id == record.repo_id), None)
    if pending is None:
        return {"full_name": record.full_name, "status": "repaired"}
    return {"full_name": record.full_name, "status": "pending", **_describe(ledger, pending)}
