"""The ledger on a node: availability, execution, application and waiting, run off the event loop."""

from adapters.ledger.application import LedgerDivergence
from adapters.ledger.host import LedgerHost, LedgerPorts, genesis_admin

__all__ = ["LedgerDivergence", "LedgerHost", "LedgerPorts", "genesis_admin"]
