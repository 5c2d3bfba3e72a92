"""Validation of the names users choose (GitHub's rules), shared by handlers and the API.

Each check returns None when the name is fine, or a sentence saying what is wrong.

Every rule must give the same verdict on every node, whatever Python it runs: the
interpreter's Unicode database differs between releases (U+1FAE8 is not printable on
Python 3.11 and is on 3.12), so the rules of protocol version 2 (the `*_v2` checks and
`ascii_lower`) are written as ASCII grammars and explicit code-point ranges only. The
version 1 checks are kept exactly as they were, so that old chains replay to the same
receipts on the interpreter they ran on.
"""

from __future__ import annotations

import re

from domain.refs import HEADS, ref_format_error

LOGIN_MAX = 39
REPO_NAME_MAX = 100
TEAM_NAME_MAX = 255
EMAIL_MAX = 254
BRANCH_MAX = 255

_LOGIN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_REPO_RE = re.compile(r"[A-Za-z0-9._-]{1,100}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SLUG_SEP_RE = re.compile(r"[^a-z0-9]+")
_BRANCH_BAD_CHARS = frozenset(" ~^:?*[\\\x7f")


def login_error(login: str) -> str | None:
    if not 1 <= len(login) <= LOGIN_MAX:
        return f"login must be 1 to {LOGIN_MAX} characters"
    if not _LOGIN_RE.fullmatch(login):
        return (
            "login may only contain letters, digits and single hyphens, and cannot begin or end with a hyphen"
        )
    return None


def repo_name_error(name: str) -> str | None:
    if not _REPO_RE.fullmatch(name):
        return f"repository name must be 1 to {REPO_NAME_MAX} characters of letters, digits, '.', '_' or '-'"
    if name in (".", ".."):
        return f"repository name cannot be {name!r}"
    if ascii_lower(name).endswith(".git"):
        return "repository name cannot end with '.git'"
    return None


def email_error(email: str) -> str | None:
    if len(email) > EMAIL_MAX or not _EMAIL_RE.fullmatch(email):
        return "email must look like name@example.com"
    return None


def team_slug(name: str) -> str:
    """GitHub's team slug: lowercase, runs of anything but a-z/0-9 become '-', trimmed."""
    return _SLUG_SEP_RE.sub("-", name.lower()).strip("-")


def team_name_error(name: str) -> str | None:
    """Version 1 (uses the interpreter's Unicode database; see `team_name_error_v2`)."""
    if not 1 <= len(name) <= TEAM_NAME_MAX or not name.isprintable() or name.strip() != name:
        return f"team name must be 1 to {TEAM_NAME_MAX} printable characters without surrounding spaces"
    if not team_slug(name):
        return "team name must contain at least one letter or digit"
    return None


# -- version 2: explicit code points only -------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

#: Code points a name may not contain: controls, separators other than the ASCII space,
#: invisible formatting and direction overrides, surrogates, private use, noncharacters
#: and tags. Ranges are inclusive. Unassigned code points are allowed (they cannot be
#: told apart without a Unicode table, which is exactly what must not be consulted).
UNPRINTABLE_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F),  # C0 controls
    (0x007F, 0x009F),  # DEL and C1 controls
    (0x00A0, 0x00A0),  # no-break space
    (0x00AD, 0x00AD),  # soft hyphen
    (0x061C, 0x061C),  # Arabic letter mark
    (0x1680, 0x1680),  # Ogham space mark
    (0x180E, 0x180E),  # Mongolian vowel separator
    (0x2000, 0x200F),  # spaces, zero-width characters, LRM/RLM
    (0x2028, 0x202F),  # line/paragraph separators, bidi embeddings and overrides, narrow nbsp
    (0x205F, 0x206F),  # medium math space, invisible operators, bidi isolates
    (0x3000, 0x3000),  # ideographic space
    (0xD800, 0xDFFF),  # surrogates
    (0xE000, 0xF8FF),  # private use
    (0xFDD0, 0xFDEF),  # noncharacters
    (0xFEFF, 0xFEFF),  # byte order mark
    (0xFFF9, 0xFFFB),  # interlinear annotation
    (0xE0000, 0xE007F),  # tags
    (0xF0000, 0x10FFFF),  # supplementary private use
)


_NONCHARACTERS = tuple((plane << 16 | 0xFFFE, plane << 16 | 0xFFFF) for plane in range(17))
#: One character class of every range above (a regex of explicit code points: no Unicode tables).
_UNPRINTABLE_RE = re.compile(
    "[" + "".join(f"\\U{low:08x}-\\U{high:08x}" for low, high in UNPRINTABLE_RANGES + _NONCHARACTERS) + "]"
)


def printable(text: str) -> bool:
    """Whether every character is one a name may hold (see `UNPRINTABLE_RANGES`; also the
    noncharacters U+xFFFE and U+xFFFF of every plane)."""
    return _UNPRINTABLE_RE.search(text) is None


def ascii_lower(text: str) -> str:
    """Lowercase A-Z only: logins, slugs and names compare the same on every interpreter."""
    return text.translate(_ASCII_LOWER)


def team_slug_v2(name: str) -> str:
    """GitHub's team slug with ASCII case folding: runs of anything but a-z/0-9 become '-'."""
    return _SLUG_SEP_RE.sub("-", ascii_lower(name)).strip("-")


def team_name_error_v2(name: str) -> str | None:
    if not 1 <= len(name) <= TEAM_NAME_MAX or not printable(name) or name[0] == " " or name[-1] == " ":
        return f"team name must be 1 to {TEAM_NAME_MAX} printable characters without surrounding spaces"
    if not team_slug_v2(name):
        return "team name must contain at least one letter or digit"
    return None


_EMAIL_V2_RE = re.compile(r"[^@\x00-\x20\x7f]+@[^@\x00-\x20\x7f]+\.[^@\x00-\x20\x7f]+")


def email_error_v2(email: str) -> str | None:
    if len(email) > EMAIL_MAX or not _EMAIL_V2_RE.fullmatch(email) or not printable(email):
        return "email must look like name@example.com"
    return None


def branch_name_error_v2(name: str, field: str = "default_branch") -> str | None:
    """A branch name git can store, under the same rules as a pushed ref (`domain.refs`)."""
    bad = name.startswith("-") or ref_format_error(HEADS + name) is not None
    return f"{field} is not a valid branch name" if bad else None


def _refname_bad(name: str) -> bool:
    """`git check-ref-format` rules for a ref name (or the part after refs/heads/ or refs/tags/)."""
    return (
        not 1 <= len(name) <= BRANCH_MAX
        or any(c in _BRANCH_BAD_CHARS or ord(c) < 32 for c in name)
        or name.startswith("/")
        or name.endswith(("/", "."))
        or ".." in name
        or "//" in name
        or "@{" in name
        or name == "@"
        or any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))
    )


def branch_name_error(name: str, field: str = "default_branch") -> str | None:
    """The essentials of `git check-ref-format --branch`; `field` names the input in the message."""
    bad = _refname_bad(name) or name.startswith("-")
    return f"{field} is not a valid branch name" if bad else None


#: The namespaces a push may write: branches and tags.
REF_PREFIXES = ("refs/heads/", "refs/tags/")


def ref_name_error(ref: str) -> str | None:
    """A full ref a push may update: refs/heads/<branch> or refs/tags/<tag>, valid per git."""
    prefix = next((p for p in REF_PREFIXES if ref.startswith(p)), None)
    if prefix is None:
        return "ref must start with refs/heads/ or refs/tags/"
    short = ref[len(prefix) :]
    if _refname_bad(short) or short.startswith("-"):
        return f"{ref!r} is not a valid git ref name"
    return None
