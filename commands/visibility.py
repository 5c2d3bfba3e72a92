"""Who may see a transaction: what it touched, and whether a viewer may read all of that.

A transaction, its receipt and its events describe private things: a private repository's
id and the branch names pushed to it, a secret team, who belongs to an organization, a
user's email, the ids of keys and tokens. Blocks are public, so the API shows a
transaction's content only to a viewer who may see it:

- its actor (once the ledger authenticated them: a transaction refused with 401, or never
  authenticated, has no actor anyone can claim);
- site administrators;
- anyone who may read every resource it touched, judged against the current state: a
  repository made private later hides its old transactions, and a resource that no
  longer exists (or never did) hides them from everyone but the actor and site admins.

A viewer who authenticated with an API token sees no more than the token's scopes let it
read (`commands.scopes`, when `can_see` is given them): a private repository needs `repo`,
an organization's membership `read:org`, a team what reading the team needs, a user's
email `user:email` (or `site_admin`); seeing everything as a site administrator needs
`site_admin`, on top of what each resource needs. Even
the actor's own transactions follow this, so a token limited to public information never
learns the names of private repositories or branches its user pushed to.

`touched` is a pure function of the decoded transaction and its receipt, with one
classifier per command kind in `TOUCHES` (tests check that every kind in
`commands.handlers.COMMANDS` has one, so a new kind cannot be shown by default).
Bytes that do not decode, an unknown kind and a payload that does not validate are
visible to site administrators (and the authenticated actor) only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from commands import payloads as p
from commands import scopes as sc
from commands.decision import BAD_TRANSACTION, UNAUTHORIZED, Rejection
from commands.envelope import EnvelopeError, Transaction, decode_transaction
from commands.handlers import parse_payload
from commands.ledger import DUPLICATE_MESSAGE, Receipt
from domain.names import team_slug
from domain.permissions import can_read, can_see_team
from domain.rules import Rules
from domain.state import LedgerState


@dataclass(frozen=True, slots=True)
class RepoNamed:
    """A repository as the transaction named it; resolved to the holder of the name at its height."""

    owner: str
    name: str


@dataclass(frozen=True, slots=True)
class RepoById:
    """A repository known by id (e.g. the one a `repo.create` made)."""

    repo_id: str


@dataclass(frozen=True, slots=True)
class OrgMembership:
    """Who belongs to an organization and in which role: its members may see it."""

    org: str


@dataclass(frozen=True, slots=True)
class TeamNamed:
    """A team of an organization: visible as `domain.permissions.can_see_team` says."""

    org: str
    slug: str


@dataclass(frozen=True, slots=True)
class UserPrivate:
    """A user's private details (their email): that user only."""

    user_id: str


@dataclass(frozen=True, slots=True)
class Credentials:
    """Keys and tokens: nobody beyond the actor and site admins."""


Resource = RepoNamed | RepoById | OrgMembership | TeamNamed | UserPrivate | Credentials


@dataclass(frozen=True, slots=True)
class Touched:
    """What a transaction at `height` touched, and the login of its authenticated actor."""

    height: int
    actor: str | None
    resources: tuple[Resource, ...]


Classifier = Callable[[Any, Receipt | None], tuple[Resource, ...]]


def _result(receipt: Receipt | None, key: str) -> str | None:
    """An id the accepted transaction created (from its receipt), else None."""
    if receipt is None or not receipt.ok:
        return None
    value = receipt.result.get(key)
    return value if isinstance(value, str) else None


def _credentials(_cmd: Any, _receipt: Receipt | None) -> tuple[Resource, ...]:
    return (Credentials(),)


def _user_create(_cmd: p.UserCreate, receipt: Receipt | None) -> tuple[Resource, ...]:
    # The payload holds the email; a refused creation is the site admin's business only.
    user_id = _result(receipt, "user_id")
    return (Credentials(),) if user_id is None else (UserPrivate(user_id),)


def _org_create(cmd: p.OrgCreate, _receipt: Receipt | None) -> tuple[Resource, ...]:
    return (OrgMembership(cmd.login),)  # it names the first owner


def _org_member(cmd: p.OrgSetMembership | p.OrgRemoveMember, _r: Receipt | None) -> tuple[Resource, ...]:
    return (OrgMembership(cmd.org),)


def _team_create(cmd: p.TeamCreate, receipt: Receipt | None) -> tuple[Resource, ...]:
    return (TeamNamed(cmd.org, _result(receipt, "slug") or team_slug(cmd.name)),)


def _team_member(cmd: p.TeamSetMembership | p.TeamRemoveMember, _r: Receipt | None) -> tuple[Resource, ...]:
    return (TeamNamed(cmd.org, cmd.team_slug),)


def _team_repo(cmd: p.TeamSetRepoPermission | p.TeamRemoveRepo, _r: Receipt | None) -> tuple[Resource, ...]:
    return (TeamNamed(cmd.org, cmd.team_slug), RepoNamed(cmd.owner, cmd.repo))


def _repo_create(cmd: p.RepoCreate, receipt: Receipt | None) -> tuple[Resource, ...]:
    repo_id = _result(receipt, "repo_id")
    return (RepoNamed(cmd.owner, cmd.name),) if repo_id is None else (RepoById(repo_id),)


def _repo(cmd: Any, _receipt: Receipt | None) -> tuple[Resource, ...]:
    """Every command that names an existing repository as `owner`/`repo`."""
    owner, repo = getattr(cmd, "owner", None), getattr(cmd, "repo", None)
    if not isinstance(owner, str) or not isinstance(repo, str):
        raise TypeError(f"{type(cmd).__name__} names no owner/repo")
    return (RepoNamed(owner, repo),)


#: What each command kind touches. Every kind of `commands.handlers.COMMANDS` must be here.
TOUCHES: dict[str, Classifier] = {
    "user.create": _user_create,
    "user.add_key": _credentials,
    "token.issue": _credentials,
    "token.revoke": _credentials,
    "org.create": _org_create,
    "org.set_membership": _org_member,
    "org.remove_member": _org_member,
    "team.create": _team_create,
    "team.set_membership": _team_member,
    "team.remove_member": _team_member,
    "team.set_repo_permission": _team_repo,
    "team.remove_repo": _team_repo,
    "repo.create": _repo_create,
    "repo.update": _repo,
    "repo.delete": _repo,
    "collaborator.set": _repo,
    "collaborator.remove": _repo,
    "git.push_refs": _repo,
    "repo.set_branch_protection": _repo,
    "repo.remove_branch_protection": _repo,
}


def _authenticated(receipt: Receipt | None) -> bool:
    """Whether the ledger authenticated the actor when it applied this transaction.

    400 is a refusal before authentication (bad envelope, wrong chain; an unknown kind is
    400 too and is treated alike), 401 a failed one, and a replay is refused unread.
    """
    if receipt is None or receipt.code in (BAD_TRANSACTION, UNAUTHORIZED):
        return False
    return not (receipt.code == 409 and receipt.message == DUPLICATE_MESSAGE)


def touched(tx: Transaction | None, receipt: Receipt | None, height: int, *, rules: Rules) -> Touched:
    """What `tx` (None: bytes that do not decode) touched; `receipt` is None if not applied yet.

    `rules` are the protocol rules at `height` (payload models differ between versions).
    """
    if tx is None:
        return Touched(height, None, (Credentials(),))
    actor = tx.actor if _authenticated(receipt) else None
    classify = TOUCHES.get(tx.kind)
    parsed = parse_payload(tx.kind, tx.payload, rules)
    if classify is None or isinstance(parsed, Rejection):
        return Touched(height, actor, (Credentials(),))
    return Touched(height, actor, classify(parsed, receipt))


def touched_by_bytes(raw: bytes | None, receipt: Receipt | None, height: int, *, rules: Rules) -> Touched:
    """`touched` for raw block bytes (None: bytes this node cannot find)."""
    try:
        tx = decode_transaction(raw) if raw is not None else None
    except EnvelopeError:
        tx = None
    return touched(tx, receipt, height, rules=rules)


def can_see(
    state: LedgerState, viewer_id: str | None, what: Touched, *, scopes: Iterable[str] | None = None
) -> bool:
    """Whether the viewer (None = anonymous) may see the transaction, judged on `state` now.

    `scopes`: those of the token the viewer authenticated with, where scopes bind; None
    when they do not (no token, or a chain on protocol version 1).
    """
    have = None if scopes is None else sc.expand(scopes)
    if have is not None and not all(_scoped(state, have, what.height, r) for r in what.resources):
        return False
    viewer = state.user(viewer_id) if viewer_id is not None else None
    if viewer is not None:
        if viewer.site_admin and (have is None or sc.SITE_ADMIN in have):
            return True
        actor = state.user_by_login(what.actor) if what.actor is not None else None
        if actor is not None and actor.user_id == viewer.user_id:
            return True
    if not what.resources:
        return False
    return all(_may_read(state, viewer_id, what.height, r) for r in what.resources)


def _scoped(state: LedgerState, have: frozenset[str], height: int, resource: Resource) -> bool:
    """Whether a token with these (expanded) scopes may read this kind of resource at all."""
    match resource:
        case RepoNamed(owner, name):
            repo_id = state.repo_named_at(owner, name, height)
            repo = state.repo(repo_id) if repo_id is not None else None
            return sc.can_read_repo(have, repo is not None and repo.private)
        case RepoById(repo_id):
            repo = state.repo(repo_id)
            return sc.can_read_repo(have, repo is not None and repo.private)
        case OrgMembership():
            return sc.READ_ORG in have
        case TeamNamed():
            return sc.READ_TEAM.allows(have)
        case UserPrivate():  # an email; creating users is site administration
            return sc.EMAIL.allows(have) or sc.SITE_ADMIN in have
        case Credentials():
            return True  # only the actor and site administrators see these anyway
    return False  # pragma: no cover - every resource type is matched above


def _may_read(state: LedgerState, viewer_id: str | None, height: int, resource: Resource) -> bool:
    match resource:
        case RepoNamed(owner, name):
            repo_id = state.repo_named_at(owner, name, height)
            return repo_id is not None and can_read(state, viewer_id, repo_id)
        case RepoById(repo_id):
            return can_read(state, viewer_id, repo_id)
        case OrgMembership(login):
            org = state.org_by_login(login)
            return (
                org is not None
                and viewer_id is not None
                and state.org_role(org.org_id, viewer_id) is not None
            )
        case TeamNamed(org_login, slug):
            org = state.org_by_login(org_login)
            team = state.team_by_slug(org.org_id, slug) if org is not None else None
            return team is not None and can_see_team(state, viewer_id, team)
        case UserPrivate(user_id):
            return viewer_id == user_id
        case Credentials():
            return False
    return False  # pragma: no cover - every resource type is matched above
