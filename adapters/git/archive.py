"""The C git commands that stream a repository's archives and large files.

Archives (`git archive`) and raw blobs (`git cat-file blob`) are produced by C git in a
subprocess rather than by dulwich, which can only hand out whole objects: git streams
blobs larger than `core.bigFileThreshold` from the pack in pieces, so neither it nor the
node holds a large file while it is sent. (A large blob stored as a delta still has to
be rebuilt, by git, in git's memory: at most one object, under the pack's object limit.)

The commands ignore the system's and the user's git configuration, so nothing outside
the repository (a `tar.tgz.command`, say) changes what is run or produced. Archives are
what GitHub's are: `git archive` of the commit, under `<prefix>/`, with the commit id in
the pax header, `export-ignore`/`export-subst` attributes honoured, times set to the
commit time, and the same bytes every time.
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = ["ARCHIVE_MEDIA_TYPES", "ArchiveFormat", "archive_command", "blob_command", "git_env"]

ArchiveFormat = Literal["tar.gz", "zip"]

ARCHIVE_MEDIA_TYPES: dict[ArchiveFormat, str] = {"tar.gz": "application/x-gzip", "zip": "application/zip"}

#: Git settings for every read: blobs over 1 MiB are streamed rather than read whole (git's
#: default is 512 MiB), and at most 64 MiB of packs are mapped at a time, in 16 MiB windows
#: (mapped pages count in git's resident memory; the defaults map up to 1 GiB per pack).
READ_SETTINGS = (
    "core.bigFileThreshold=1m",
    "core.packedGitWindowSize=16m",
    "core.packedGitLimit=64m",
)


def git_env() -> dict[str, str]:
    """The environment for git: the node's, without GIT_* variables and without any config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    return env


def _git(git: str, repo_path: str) -> list[str]:
    settings = [arg for setting in READ_SETTINGS for arg in ("-c", setting)]
    return [git, f"--git-dir={repo_path}", *settings]


def archive_command(git: str, repo_path: str, commit: str, prefix: str, fmt: ArchiveFormat) -> list[str]:
    """`git archive` of `commit` (a full object id) with every path under `prefix/`."""
    return [*_git(git, repo_path), "archive", f"--format={fmt}", f"--prefix={prefix}/", commit]


def blob_command(git: str, repo_path: str, blob: str) -> list[str]:
    """`git cat-file blob`: the blob's bytes as they are stored (no filters)."""
    return [*_git(git, repo_path), "cat-file", "blob", blob]
