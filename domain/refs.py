"""What a push may name: git's ref-name rules, Stele's reserved namespaces, and D/F conflicts.

The ledger decides which refs a repository can hold, so every node stores exactly what
the ledger says and none can be surprised by its filesystem. The rules here are those of
`git check-ref-format` (written as an explicit ASCII grammar, never the interpreter's
Unicode tables), plus byte limits that keep every ref writable as a loose ref file by
any git client (a component of at most 250 bytes leaves room for git's `.lock` suffix
within the usual 255-byte file name limit), plus namespaces Stele keeps for itself.

Two refs conflict when one is a directory prefix of the other (`refs/heads/df` and
`refs/heads/df/sub`): git stores refs as files, so it cannot hold both. `RefNamespace`
answers that from the ledger's set of refs, with git's own wording.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

#: The longest component (between slashes), in UTF-8 bytes: 255 minus git's ".lock".
SEGMENT_MAX_BYTES = 250
#: The longest full ref name, in UTF-8 bytes.
REF_MAX_BYTES = 1024
#: Namespaces a push may not write: GitHub's pull-request refs, and Stele's own.
RESERVED_PREFIXES = ("refs/pull/", "refs/stele/")

HEADS = "refs/heads/"
TAGS = "refs/tags/"

_FORBIDDEN_BYTES = frozenset(b" ~^:?*[\\\x7f") | frozenset(range(0x20))

FUNNY_REFNAME = "funny refname"
HIDDEN_REF = "deny updating a hidden ref"


def ref_format_error(ref: str) -> str | None:
    """Why `ref` is not a full ref name a push may write (None: it may).

    A ref is `refs/<namespace>/<name>` (at least three components, so no ref can be a
    namespace's directory). The answer is git's (`funny refname`, as `git receive-pack` says),
    or a sentence about the length limits, or `deny updating a hidden ref` for the
    reserved namespaces.
    """
    try:
        raw = ref.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: not a name git can write
        return FUNNY_REFNAME
    if not raw.startswith(b"refs/") or raw.count(b"/") < 2 or not _git_valid(raw):
        return FUNNY_REFNAME
    if len(raw) > REF_MAX_BYTES:
        return f"cannot lock ref '{ref}': the name is {len(raw)} bytes; the limit is {REF_MAX_BYTES}"
    for part in raw.split(b"/"):
        if len(part) > SEGMENT_MAX_BYTES:
            return (
                f"cannot lock ref '{ref}': a component is {len(part)} bytes; the limit is {SEGMENT_MAX_BYTES}"
            )
    if ref.startswith(RESERVED_PREFIXES):
        return HIDDEN_REF
    return None


def _git_valid(raw: bytes) -> bool:
    """`git check-ref-format` for a full name (refs.c: check_refname_component and friends)."""
    if raw == b"@" or raw.endswith(b".") or b".." in raw or b"@{" in raw:
        return False
    if any(b in _FORBIDDEN_BYTES for b in raw):
        return False
    for part in raw.split(b"/"):
        if not part or part.startswith(b".") or part.endswith(b".lock"):
            return False
    return True


class RefNamespace:
    """A repository's ref names, for git's directory/file conflict check.

    Refs are added and removed as the updates of a push are applied in order, so one
    push is checked against the refs as they stand after its earlier updates.
    """

    def __init__(self, refs: Iterable[str]) -> None:
        self._sorted = sorted(refs)
        self._set = set(self._sorted)

    def __contains__(self, ref: str) -> bool:
        return ref in self._set

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._sorted))

    def add(self, ref: str) -> None:
        if ref not in self._set:
            self._set.add(ref)
            bisect.insort(self._sorted, ref)

    def remove(self, ref: str) -> None:
        if ref in self._set:
            self._set.remove(ref)
            del self._sorted[bisect.bisect_left(self._sorted, ref)]

    def blocking(self, ref: str) -> str | None:
        """An existing ref that `ref` cannot be created beside (a prefix or an extension of it)."""
        parts = ref.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self._set:
                return prefix
        below = ref + "/"
        i = bisect.bisect_left(self._sorted, below)
        if i < len(self._sorted) and self._sorted[i].startswith(below):
            return self._sorted[i]
        return None

    def conflict(self, ref: str) -> str | None:
        """git's refusal to create `ref` here, or None if it can be created."""
        other = self.blocking(ref)
        if other is None:
            return None
        return f"cannot lock ref '{ref}': '{other}' exists; cannot create '{ref}'"


def same_time_conflict(first: str, second: str) -> str:
    """git's refusal of one transaction creating two refs that conflict with each other."""
    return f"cannot lock ref '{second}': cannot process '{first}' and '{second}' at the same time"
