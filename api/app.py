"""The FastAPI application served by every node."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from adapters.consensus_host import ConsensusHost
from adapters.git.store import GitStore
from adapters.ledger import LedgerHost
from api import git_http, routes_admin, routes_chain, routes_ledger, v3
from api.auth import OAuthScopeHeaders
from api.errors import install_error_handlers
from api.gateway import CommandGateway
from api.limits import BodyGuard
from api.metrics import NodeMetrics
from api.push import PushService
from api.reads import Reads
from api.services import Services
from api.settings import NodeSettings


def create_app(
    host: ConsensusHost,
    metrics: NodeMetrics,
    ledger: LedgerHost,
    seed: bytes,
    git_store: GitStore | None = None,
    offer_pack: Callable[[str], None] | None = None,
    pack_replicated: Callable[[str, int, float], Awaitable[bool]] | None = None,
    settings: NodeSettings | None = None,
) -> FastAPI:
    """The node's HTTP API; `settings` default to `NodeSettings.from_env()`."""
    if settings is None:
        settings = NodeSettings.from_env()
    app = FastAPI(
        title="Stele node",
        description="A forge and deployment cloud ordered by Simplex BFT consensus.",
        version="0.1.0",
        docs_url="/docs",
    )
    gateway = CommandGateway(host, ledger, seed)
    app.state.services = Services(
        host=host,
        ledger=ledger,
        gateway=gateway,
        metrics=metrics,
        settings=settings,
        reads=Reads(ledger, git_store),
        git=git_store,  # None: the git endpoints answer 503
        pushes=None if git_store is None else PushService(gateway, git_store, offer_pack, pack_replicated),
    )
    app.state.settings = settings  # for middleware-level helpers (api.git_reads)
    install_error_handlers(app)
    app.add_middleware(BodyGuard, limits=settings.http)
    app.add_middleware(OAuthScopeHeaders)
    app.include_router(routes_chain.router)
    app.include_router(v3.router, prefix="/api/v3")
    app.include_router(routes_ledger.router)
    app.include_router(routes_admin.router)
    app.include_router(git_http.router)
    return app
