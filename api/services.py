"""The node's parts the HTTP API uses, gathered once by `create_app`.

Routes reach them through `services(request)` (or the v3 request context), never by
looking up attributes of `request.app.state` one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from adapters.consensus_host import ConsensusHost
from adapters.git.store import GitStore
from adapters.ledger import LedgerHost
from api.gateway import CommandGateway
from api.metrics import NodeMetrics
from api.push import PushService
from api.reads import Reads
from api.settings import NodeSettings


@dataclass(frozen=True)
class Services:
    host: ConsensusHost
    ledger: LedgerHost
    gateway: CommandGateway
    metrics: NodeMetrics
    settings: NodeSettings
    reads: Reads
    #: The node's bare repositories; None: git is not enabled on this node.
    git: GitStore | None = None
    pushes: PushService | None = None


def services(request: Request) -> Services:
    """The node's parts (set once by `create_app`)."""
    found = request.app.state.services
    assert isinstance(found, Services), "create_app sets app.state.services"
    return found
