"""One settings object for a node: every limit and tool it takes from its environment.

`NodeSettings.from_env()` reads, besides the defaults:

- `STELE_MAX_PACK_BYTES`: the largest pack a push (or a peer) may send (default 512 MiB);
- `STELE_GIT_BINARY`: the C git used to serve fetches, archives and large files (default:
  `git` on PATH; empty: dulwich serves fetches, archives answer 503);
- `STELE_HTTP_BODY_STALL_S`, `STELE_HTTP_BODY_GRACE_S`, `STELE_HTTP_BODY_MIN_RATE`: how
  slowly a request body may arrive (see `api.limits`).

Everything else a node does is decided by genesis and the ledger, not by settings.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field

from adapters.git.store import DEFAULT_MAX_PACK_BYTES
from api.limits import HttpLimits


@dataclass(frozen=True)
class GitHttpConfig:
    """Limits and tools of the git endpoints."""

    max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES
    #: The largest (inflated) fetch negotiation request accepted.
    max_upload_request_bytes: int = 64 * 1024 * 1024
    #: The C git used for fetches; None: dulwich serves them.
    git_binary: str | None = field(default_factory=lambda: shutil.which("git"))
    #: Check every received commit, tree and tag (git's fsck rules).
    fsck: bool = True


@dataclass(frozen=True)
class GitReadConfig:
    """Limits of the expensive git reads of the REST API (see `api.git_reads`)."""

    #: Expensive reads (archives, raw files over 1 MB, commit diffs) served at once.
    concurrent: int = 4
    #: Further expensive reads that may wait for a slot; beyond that, 503 at once.
    queued: int = 8
    #: How long a waiting read waits for a slot before its 503.
    queue_wait_s: float = 60.0
    #: A streamed read is cut off after this long, its git process killed.
    time_limit_s: float = 120.0
    #: What 503 answers put in Retry-After, in seconds.
    retry_after_s: int = 5
    #: The C git that streams archives and large files; None: those answer 503.
    git_binary: str | None = field(default_factory=lambda: shutil.which("git"))


@dataclass(frozen=True)
class NodeSettings:
    http: HttpLimits = field(default_factory=HttpLimits)
    git: GitHttpConfig = field(default_factory=GitHttpConfig)
    reads: GitReadConfig = field(default_factory=GitReadConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NodeSettings:
        """The defaults, overridden by the STELE_* variables that are set. Raises ValueError."""
        env = os.environ if environ is None else environ
        max_pack = DEFAULT_MAX_PACK_BYTES
        raw = env.get("STELE_MAX_PACK_BYTES", "").strip()
        if raw:
            if not raw.isascii() or not raw.isdigit() or not 1024 <= int(raw) <= 2**40:
                raise ValueError(
                    f"STELE_MAX_PACK_BYTES must be a number of bytes from 1024 to 2**40, not {raw!r}"
                )
            max_pack = int(raw)
        binary = env.get("STELE_GIT_BINARY")
        if binary is None:
            git_binary = shutil.which("git")
        else:
            git_binary = (shutil.which(binary) or binary) if binary.strip() else None
        return cls(
            HttpLimits.from_env(env),
            GitHttpConfig(max_pack_bytes=max_pack, git_binary=git_binary),
            GitReadConfig(git_binary=git_binary),
        )
