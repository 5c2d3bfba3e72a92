"""Git on a node: bare repositories, pack quarantine and validation (dulwich), smart HTTP helpers.

- `store.GitStore`: one bare repository per Stele repository id, refs written from the
  ledger's state, and the content-addressed pack quarantine; implements the ledger's
  `GitView` (`has_commit`, `is_ancestor`) over a repository plus one quarantined pack.
- `packs.receive_pack`: validate a received (possibly thin) pack with dulwich, complete
  it into a self-contained pack and quarantine it under its SHA-256.
"""

from adapters.git.packs import PackRejected, ReceivedPack, accept_peer_pack, receive_pack
from adapters.git.store import GitStore, RefUpdate

__all__ = ["GitStore", "PackRejected", "ReceivedPack", "RefUpdate", "accept_peer_pack", "receive_pack"]
