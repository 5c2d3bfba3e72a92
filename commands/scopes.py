"""GitHub's classic OAuth scopes: what a token may do for its user, and what it gets without.

A token's scopes only ever narrow what it may do: they add nothing to its user's
permissions (`domain.permissions` still decides those). One rule serves both places that
judge a token: the API, before it reads or submits anything, and the ledger, when it
applies a node-attested transaction (from protocol version 2; see `domain.rules`), so the
two always agree. A transaction the user signed with their own key carries no token and
acts with the user's full authority.

The rules follow GitHub's documentation of classic scopes:

- no scope reads public information only; a private repository is 404 to a token without
  `repo` (its existence must not leak);
- `repo` reads and writes every repository the user may; `public_repo` writes public ones
  (creating a private repository, or touching one, needs `repo`);
- `delete_repo` deletes a repository; without it GitHub answers 403 "Must have admin rights
  to Repository." (404 if the token could not see the repository at all);
- `admin:org` manages an organization, its teams and memberships; `write:org` changes
  organization and team membership; `read:org` reads them; `repo` also manages team
  memberships and a team's repositories;
- `admin:public_key` / `write:public_key` / `read:public_key` manage the user's keys;
- `user` includes `read:user` (the private profile) and `user:email`;
- `site_admin` is needed by the site administration routes (user and organization
  creation, impersonation tokens, the event stream, repairs).

Most refusals are 404 "Not Found", which is what GitHub answers to a token that lacks the
scope of an action (it does not tell which scope is missing); the exceptions are repository
deletion (403, as above), pushes (403, git's "Permission to ... denied") and site
administration (403, like a user who is not a site administrator).

Pure: the answer depends only on the state at a height, the command and the token's scopes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from commands import payloads as p
from commands.decision import FORBIDDEN, NOT_FOUND, Rejection
from domain.permissions import effective_permission
from domain.records import User
from domain.state import LedgerState

REPO = "repo"
PUBLIC_REPO = "public_repo"
DELETE_REPO = "delete_repo"
ADMIN_ORG = "admin:org"
WRITE_ORG = "write:org"
READ_ORG = "read:org"
USER = "user"
READ_USER = "read:user"
USER_EMAIL = "user:email"
ADMIN_PUBLIC_KEY = "admin:public_key"
WRITE_PUBLIC_KEY = "write:public_key"
READ_PUBLIC_KEY = "read:public_key"
SITE_ADMIN = "site_admin"

#: Each scope and the scopes it includes directly (GitHub's hierarchy of classic scopes).
_INCLUDES: dict[str, tuple[str, ...]] = {
    REPO: ("repo:status", "repo_deployment", PUBLIC_REPO, "repo:invite", "security_events"),
    "admin:repo_hook": ("write:repo_hook",),
    "write:repo_hook": ("read:repo_hook",),
    ADMIN_ORG: (WRITE_ORG,),
    WRITE_ORG: (READ_ORG,),
    ADMIN_PUBLIC_KEY: (WRITE_PUBLIC_KEY,),
    WRITE_PUBLIC_KEY: (READ_PUBLIC_KEY,),
    USER: (READ_USER, USER_EMAIL, "user:follow"),
    "write:discussion": ("read:discussion",),
    "write:packages": ("read:packages",),
    "admin:gpg_key": ("write:gpg_key",),
    "write:gpg_key": ("read:gpg_key",),
    "admin:ssh_signing_key": ("write:ssh_signing_key",),
    "write:ssh_signing_key": ("read:ssh_signing_key",),
    "project": ("read:project",),
    "admin:enterprise": ("manage_runners:enterprise", "manage_billing:enterprise", "read:enterprise"),
    "audit_log": ("read:audit_log",),
}
_LEAVES: tuple[str, ...] = (DELETE_REPO, "admin:org_hook", "gist", "notifications", "workflow")
_LEAVES += ("delete:packages", "codespace", "copilot", SITE_ADMIN)

#: Every classic scope GitHub documents; a token may be issued only with these.
KNOWN_SCOPES: frozenset[str] = frozenset(
    [*_INCLUDES, *(s for included in _INCLUDES.values() for s in included), *_LEAVES]
)


def expand(scopes: Iterable[str]) -> frozenset[str]:
    """The scopes and every scope they include (`admin:org` gives `write:org` and `read:org`)."""
    out: set[str] = set()
    todo = list(scopes)
    while todo:
        scope = todo.pop()
        if scope not in out:
            out.add(scope)
            todo.extend(_INCLUDES.get(scope, ()))
    return frozenset(out)


def normalized(scopes: Sequence[str]) -> list[str]:
    """The scopes as GitHub stores them: repeats and scopes another one includes are dropped.

    `["user", "gist", "user:email"]` becomes `["user", "gist"]`; the order is kept.
    """
    out: list[str] = []
    for scope in scopes:
        if scope in out:
            continue
        if any(scope in expand([other]) for other in scopes if other != scope):
            continue
        out.append(scope)
    return out


def header(scopes: Iterable[str]) -> str:
    """A list of scopes as GitHub's `X-OAuth-Scopes` / `X-Accepted-OAuth-Scopes` write them."""
    return ", ".join(sorted(set(scopes)))


@dataclass(frozen=True, slots=True)
class Need:
    """What an action accepts from a token (any one of `accepted`, or a scope including it).

    `required` False: the scopes are only advertised (reading a public repository needs
    none). A token without them gets `code`/`message`, or 404 when it also holds none of
    `seen_with` (it could not even see the target, so it must not learn it exists).
    """

    accepted: frozenset[str]
    required: bool = True
    code: int = NOT_FOUND
    message: str = "Not Found"
    seen_with: frozenset[str] | None = None

    @property
    def accepted_header(self) -> str:
        return header(self.accepted)

    def allows(self, scopes: Iterable[str]) -> bool:
        """Whether a token with these scopes holds one the action accepts (advertised ones too)."""
        return bool(expand(scopes) & self.accepted)

    def refusal(self, scopes: Iterable[str]) -> Rejection | None:
        """Why a token with these scopes may not do this, or None if it may."""
        have = expand(scopes)
        if not self.required or have & self.accepted:
            return None
        if self.seen_with is not None and not have & self.seen_with:
            return Rejection(NOT_FOUND, "Not Found")
        return Rejection(self.code, self.message)


NEED_DELETE_SCOPE = "Must have admin rights to Repository."
NEED_SITE_ADMIN_SCOPE = "Must have the site_admin scope."

# -- reads (the API judges them: reads are not transactions) ------------------------------

#: Public profiles: no scope needed (GitHub advertises `user`).
PUBLIC_PROFILE = Need(frozenset({USER}), required=False)
#: The authenticated user's private profile details (private repository counts).
PRIVATE_PROFILE = Need(frozenset({READ_USER, USER}), required=False)
#: A user's email addresses.
EMAIL = Need(frozenset({USER, USER_EMAIL}), required=False)
#: An organization's public profile.
ORG_PROFILE = Need(frozenset({ADMIN_ORG, READ_ORG, REPO, USER, WRITE_ORG}), required=False)
#: A team of an organization (who may see it at all is `domain.permissions.can_see_team`).
READ_TEAM = Need(frozenset({ADMIN_ORG, READ_ORG, REPO, WRITE_ORG}))
#: The authenticated user's own keys.
READ_KEYS = Need(frozenset({ADMIN_PUBLIC_KEY, READ_PUBLIC_KEY, WRITE_PUBLIC_KEY}))
#: Site administration (user and organization creation, tokens, the event stream, repairs).
SITE_ADMINISTRATION = Need(frozenset({SITE_ADMIN}), code=FORBIDDEN, message=NEED_SITE_ADMIN_SCOPE)


def repo_read(private: bool) -> Need:
    """Reading a repository: `repo` for a private one; a public one needs no scope."""
    return Need(frozenset({REPO}), required=private)


def repo_write(private: bool) -> Need:
    """Changing a repository (settings, collaborators, protection): `repo`, or `public_repo`
    while it is public."""
    return Need(frozenset({REPO} if private else {PUBLIC_REPO, REPO}))


def push(private: bool, full_name: str, login: str) -> Need:
    """A push: like any repository write, refused as git words it (403)."""
    return Need(
        repo_write(private).accepted,
        code=FORBIDDEN,
        message=f"Permission to {full_name}.git denied to {login}.",
        seen_with=frozenset({REPO}) if private else None,
    )


def repo_delete(private: bool) -> Need:
    return Need(
        frozenset({DELETE_REPO}),
        code=FORBIDDEN,
        message=NEED_DELETE_SCOPE,
        seen_with=frozenset({REPO}) if private else None,
    )


def can_read_repo(scopes: Iterable[str], private: bool) -> bool:
    """Whether a token with these scopes may read a repository of this visibility."""
    return repo_read(private).refusal(scopes) is None


# -- commands (the same rule for the API's early check and the ledger at apply time) -------

WRITE_KEYS = Need(frozenset({ADMIN_PUBLIC_KEY, WRITE_PUBLIC_KEY}))
ORG_MEMBERSHIP = Need(frozenset({ADMIN_ORG, WRITE_ORG}))
TEAM_ADMIN = Need(frozenset({ADMIN_ORG}))
TEAM_MEMBERSHIP = Need(frozenset({ADMIN_ORG, REPO, WRITE_ORG}))


def _private_to(state: LedgerState, actor: User, owner: str, name: str) -> tuple[bool, str]:
    """(private, full name) of a repository as the actor sees it: one the actor cannot read
    counts as public, so the scopes asked for never tell that a hidden repository exists
    (the handler answers 404 for it anyway)."""
    repo = state.repo_by_name(owner, name)
    if repo is None or effective_permission(state, actor.user_id, repo.repo_id) is None:
        return False, f"{owner}/{name}"
    return repo.private, repo.full_name


def command_need(state: LedgerState, kind: str, cmd: Any, actor: User) -> Need:
    """The scopes a token needs for a command (its validated payload `cmd`) by `actor`,
    judged on the state at the command's height."""
    match cmd:
        case p.UserCreate() | p.OrgCreate() | p.TokenIssue() | p.TokenRevoke():
            return SITE_ADMINISTRATION
        case p.UserAddKey():
            return WRITE_KEYS
        case p.OrgSetMembership() | p.OrgRemoveMember():
            return ORG_MEMBERSHIP
        case p.TeamCreate():
            return TEAM_ADMIN
        case p.TeamSetMembership() | p.TeamRemoveMember():
            return TEAM_MEMBERSHIP
        case p.TeamSetRepoPermission() | p.TeamRemoveRepo():
            private, _ = _private_to(state, actor, cmd.owner, cmd.repo)
            return Need(repo_write(private).accepted | {ADMIN_ORG})
        case p.RepoCreate():
            return repo_write(cmd.private)
        case p.RepoUpdate():
            private, _ = _private_to(state, actor, cmd.owner, cmd.repo)
            return repo_write(private or cmd.private is True)
        case p.RepoDelete():
            private, _ = _private_to(state, actor, cmd.owner, cmd.repo)
            return repo_delete(private)
        case p.PushRefs() | p.PushRefsV1():
            private, full_name = _private_to(state, actor, cmd.owner, cmd.repo)
            return push(private, full_name, actor.login)
        case (
            p.CollaboratorSet()
            | p.CollaboratorRemove()
            | p.BranchProtectionSet()
            | p.BranchProtectionRemove()
        ):
            private, _ = _private_to(state, actor, cmd.owner, cmd.repo)
            return repo_write(private)
    raise ValueError(f"no scope rule for {kind!r}")  # every kind must have one (tests check)


def command_refusal(
    state: LedgerState, kind: str, cmd: Any, actor: User, scopes: Iterable[str]
) -> Rejection | None:
    """Why a token with `scopes` may not run this command, or None."""
    return command_need(state, kind, cmd, actor).refusal(scopes)
