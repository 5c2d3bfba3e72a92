"""Native chain routes: status, blocks, transaction submission, health and metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from adapters.consensus_host import ConsensusHost
from api.auth import authenticate
from api.errors import ApiError
from api.limits import BATCH_BODY_LIMIT
from api.services import services
from api.tx_view import block_transactions, raw_visible, viewer_of
from commands.git_view import GitViewError
from consensus.interface import Finalized
from consensus.mempool import AddResult
from consensus.types import tx_id

router = APIRouter()

MAX_WAIT_S = 60.0


def _host(request: Request) -> ConsensusHost:
    host = services(request).host
    return host


@router.get("/health/live", tags=["health"])
async def live() -> dict[str, str]:
    """The process is up and serving HTTP."""
    return {"status": "ok"}


@router.get("/health/ready", tags=["health"])
async def ready(request: Request) -> JSONResponse:
    """Ready once connected to a quorum of validators and caught up with them."""
    host = _host(request)
    reasons = []
    if not host.quorum_reachable():
        reasons.append(
            f"connected to {host.peers_connected + 1} of {host.validators.n} validators, "
            f"quorum is {host.validators.quorum}"
        )
    if not host.caught_up():
        reasons.append(
            f"catching up: finalized height {host.replica.finalized_height}, "
            f"peers report {host.replica.best_peer_height()}"
        )
    ledger = services(request).ledger
    if ledger.waiting_for_packs:
        reasons.append(f"applied height {ledger.height}: waiting for packs from peers")
    repairs = ledger.repairs
    if repairs is not None and len(repairs):
        names = []
        for entry in repairs.pending()[:10]:
            repo = ledger.state.repo(entry.repo_id)
            names.append(repo.full_name if repo is not None else entry.repo_id)
        more = f" and {len(repairs) - len(names)} more" if len(repairs) > len(names) else ""
        reasons.append(f"repairing repositories on this node: {', '.join(names)}{more}")
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/api/v1/status", tags=["chain"])
async def status(request: Request) -> dict[str, Any]:
    host = _host(request)
    r = host.replica
    tip = r.finalized_tip
    return {
        "chain_id": host.genesis.chain_id,
        "node_id": host.signer.pubkey.hex(),
        "validator_index": host.index,
        "validators": [
            {"index": i, "name": v.name, "pubkey": v.pubkey.hex(), "p2p": f"{v.host}:{v.p2p_port}"}
            for i, v in enumerate(host.genesis.validators)
        ],
        "quorum": host.validators.quorum,
        "view": r.view,
        "leader": r.leader(r.view),
        "finalized_height": tip.height,
        "finalized_hash": tip.hash.hex(),
        "finalized_view": tip.view,
        "peers_connected": host.peers_connected,
        "peers": sorted(host.p2p.connected()),
        "mempool_size": len(host.mempool),
        "evidence": len(r.evidence),
        "uptime_s": round(time.monotonic() - host.started_at, 3),
    }


@router.get("/api/v1/blocks/{height}", tags=["chain"])
async def block(request: Request, height: int) -> dict[str, Any]:
    """A finalized block with the finalization certificate that proves it.

    `transactions` shows each transaction the caller may see (docs/api.md, "Who can see a
    transaction") and only the id of the others, marked `redacted`.
    """
    if height < 0:
        raise ApiError(422, "height must be non-negative")
    ledger = services(request).ledger
    viewer = viewer_of(authenticate(ledger.state, request.headers.get("authorization")))
    found = _host(request).block(height)
    if found is None:
        raise ApiError(404, f"no finalized block at height {height}")
    if isinstance(found, Finalized):
        return {
            "hash": found.block.hash.hex(),
            "block": found.block.to_json(),
            "certificate": found.proof.to_json(),
            # An ancestor finalized implicitly is proved by its descendant's certificate.
            "finalized_by": found.proof.block.hex(),
            "transactions": await block_transactions(ledger, viewer, height, found.block.txs),
        }
    return {
        "hash": found.hash.hex(),
        "block": found.to_json(),
        "certificate": None,
        "finalized_by": None,
        "transactions": await block_transactions(ledger, viewer, height, found.txs),
    }


@router.get("/api/v1/evidence", tags=["chain"])
async def evidence(request: Request) -> dict[str, Any]:
    """Equivocation evidence: pairs of conflicting votes signed by one validator key in one view."""
    r = _host(request).replica
    return {
        "evidence": [
            {
                "validator": a.signer,
                "pubkey": r.validators.pubkeys[a.signer].hex(),
                "kind": a.kind.name.lower(),
                "view": a.view,
                "votes": [{"block": v.block.hex(), "signature": v.signature.hex()} for v in (a, b)],
            }
            for a, b in r.evidence
        ]
    }


async def _read_body(request: Request, limit: int, what: str) -> bytes:
    """Read at most `limit` bytes; the ASGI server has already de-chunked the body."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"{what} exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"{what} exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/api/v1/transactions", status_code=202, tags=["chain"])
async def submit(
    request: Request,
    wait: bool = Query(False, description="Wait until the transaction is finalized"),
    timeout: float = Query(10.0, gt=0, le=MAX_WAIT_S, description="Seconds to wait when wait=true"),
) -> JSONResponse:
    """Submit raw transaction bytes. Answers 202 with the id, or with wait=true 200 and the height.

    Holding a transaction's bytes proves nothing about who the caller is: its outcome (the
    precheck's refusal, the receipt) is told only to a caller who may see the transaction
    (docs/api.md, "Who can see a transaction"); anyone else just has it queued.
    """
    host = _host(request)
    ledger = services(request).ledger
    viewer = viewer_of(authenticate(ledger.state, request.headers.get("authorization")))
    tx = await _read_body(request, host.config.limits.max_tx_bytes, "transaction")
    if not tx:
        raise ApiError(400, "empty transaction body")
    unavailable = {"Retry-After": "1"}
    if not host.quorum_reachable():
        raise ApiError(
            503,
            f"no quorum reachable: connected to {host.peers_connected + 1} of {host.validators.n} "
            f"validators, {host.validators.quorum} needed",
            unavailable,
        )
    tid = tx_id(tx)
    applied = ledger.receipt(tid.hex())
    if applied is not None:  # an idempotent resubmission: report the outcome it already had
        done: dict[str, Any] = {"tx_id": tid.hex(), "status": "finalized", "height": applied.height}
        if raw_visible(ledger, viewer, tx, applied):
            done["receipt"] = applied.to_json()
        return JSONResponse(done, status_code=200, headers={"X-Stele-Position": str(applied.height)})
    reason = ledger.admit(tx)
    if reason is not None:
        raise ApiError(400, f"not a valid transaction: {reason}")
    if missing := ledger.availability.missing((tx,)):
        raise ApiError(422, _missing_pack_message(missing[0]))
    gateway = services(request).gateway
    try:
        early = await gateway.precheck(tx)
    except GitViewError:
        raise ApiError(503, "this node cannot read the repository's packs; try another node") from None
    if not early.ok and raw_visible(ledger, viewer, tx, early):
        raise ApiError(early.code, early.message)
    result, tid = host.submit(tx)
    if result == AddResult.FULL:
        raise ApiError(503, "mempool is full, retry later", unavailable)
    if result == AddResult.TOO_LARGE:
        raise ApiError(413, f"transaction exceeds the limit of {host.config.limits.max_tx_bytes} bytes")
    body: dict[str, Any] = {"tx_id": tid.hex(), "status": "pending"}
    if not wait:
        loc = host.location(tid)
        if loc is not None:
            body.update(status="finalized", height=loc.height, block_hash=loc.block_hash.hex())
        return JSONResponse(body, status_code=202)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        loc = await host.wait_finalized(tid, min(remaining, 0.5)) if remaining > 0 else None
        if loc is not None:
            body.update(status="finalized", height=loc.height, block_hash=loc.block_hash.hex())
            receipt = await ledger.wait_receipt(tid.hex(), 5.0)
            if receipt is not None and raw_visible(ledger, viewer, tx, receipt):
                body["receipt"] = receipt.to_json()
            return JSONResponse(body, status_code=200, headers={"X-Stele-Position": str(loc.height)})
        if not host.quorum_reachable():
            raise ApiError(503, "lost contact with a quorum of validators before finality", unavailable)
        if remaining <= 0:
            raise ApiError(504, f"transaction {tid.hex()} not finalized within {timeout:g}s; it may still be")


MAX_BATCH_BYTES = BATCH_BODY_LIMIT
MAX_BATCH_TXS = 10_000


def _split_batch(body: bytes, max_tx: int) -> list[bytes]:
    """Parse `u32 big-endian length || bytes` records; any framing error is a 400."""
    txs: list[bytes] = []
    pos = 0
    while pos < len(body):
        if pos + 4 > len(body):
            raise ApiError(400, f"batch truncated at byte {pos}: incomplete length prefix")
        n = int.from_bytes(body[pos : pos + 4], "big")
        pos += 4
        if n == 0 or n > max_tx:
            raise ApiError(
                413 if n else 400, f"transaction {len(txs)} has size {n}; allowed 1..{max_tx} bytes"
            )
        if pos + n > len(body):
            raise ApiError(400, f"batch truncated inside transaction {len(txs)}")
        txs.append(body[pos : pos + n])
        pos += n
        if len(txs) > MAX_BATCH_TXS:
            raise ApiError(413, f"a batch holds at most {MAX_BATCH_TXS} transactions")
    return txs


@router.post("/api/v1/transactions/batch", status_code=202, tags=["chain"])
async def submit_batch(request: Request) -> JSONResponse:
    """Submit many transactions at once: the body is `u32 length || tx bytes`, repeated."""
    host = _host(request)
    body = await _read_body(request, MAX_BATCH_BYTES, "batch")
    txs = _split_batch(body, host.config.limits.max_tx_bytes)
    if not txs:
        raise ApiError(400, "empty batch")
    if not host.quorum_reachable():
        raise ApiError(503, "no quorum reachable", {"Retry-After": "1"})
    ledger = services(request).ledger
    counts = {"added": 0, "duplicate": 0, "full": 0}
    ids = []
    rejected = []
    for i, tx in enumerate(txs):
        reason = ledger.admit(tx)
        if reason is None and (missing := ledger.availability.missing((tx,))):
            reason = _missing_pack_message(missing[0])
        if reason is not None:
            rejected.append({"index": i, "reason": reason})
            ids.append(tx_id(tx).hex())
            continue
        result, tid = host.submit(tx)
        ids.append(tid.hex())
        if result == AddResult.ADDED:
            counts["added"] += 1
        elif result == AddResult.DUPLICATE:
            counts["duplicate"] += 1
        else:
            counts["full"] += 1
    status = 503 if counts["full"] == len(txs) else 202
    return JSONResponse({"tx_ids": ids, **counts, "rejected": rejected}, status_code=status)


@router.get("/metrics", tags=["health"])
async def metrics(request: Request) -> Response:
    m = services(request).metrics
    return Response(m.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _missing_pack_message(digest: str) -> str:
    return (
        f"pack {digest} is not held by this node: push the objects over git smart HTTP "
        "(which submits the push for you), or submit the transaction to the node that received them"
    )
