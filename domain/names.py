"""Validation of the names users choose (GitHub's rules), shared by handlers and the API.

Each check returns None when the name is fine, or a sentence saying what is wrong.
"""

from __future__ import annotations

import re

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
    if name.lower().endswith(".git"):
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
    if not 1 <= len(name) <= TEAM_NAME_MAX or not name.isprintable() or name.strip() != name:
        return f"team name must be 1 to {TEAM_NAME_MAX} printable characters without surrounding spaces"
    if not team_slug(name):
        return "team name must contain at least one letter or digit"
    return None


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
