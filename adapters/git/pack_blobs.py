"""The pack quarantine as a blob source for `adapters.blob_sync.BlobSync`.

Validators serve quarantined packs to each other by SHA-256 and accept a downloaded pack
only after dulwich validated it as a self-contained pack with that digest, so a peer
can never plant objects (or a bad pack) in another node's quarantine.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from adapters.git.packs import PackRejected, accept_peer_pack_file
from adapters.git.store import GitStore

log = logging.getLogger(__name__)


class PackBlobs:
    def __init__(self, store: GitStore, *, fsck: bool = True) -> None:
        self.store = store
        self.fsck = fsck

    def has(self, digest: str) -> bool:
        return self.store.has_pack(digest)

    def size(self, digest: str) -> int | None:
        if not self.store.has_pack(digest):
            return None
        try:
            return self.store.pack_base(digest).with_suffix(".pack").stat().st_size
        except FileNotFoundError:
            return None

    def read(self, digest: str, offset: int, length: int) -> bytes:
        with open(self.store.pack_base(digest).with_suffix(".pack"), "rb") as f:
            f.seek(offset)
            return f.read(length)

    async def accept(self, digest: str, path: Path) -> bool:
        """Validate and quarantine a downloaded pack (in a worker thread: indexing takes a while)."""
        try:
            await asyncio.to_thread(accept_peer_pack_file, self.store, digest, path, fsck=self.fsck)
        except PackRejected as exc:
            log.warning("refused pack sha256:%s from a peer: %s", digest[:16], exc)
            return False
        # Anything else (OSError: disk full...) propagates: BlobSync retries it later.
        return True
