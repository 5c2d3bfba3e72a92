"""Folding events into `LedgerState`: the only way state changes.

`apply_event` is a pure function of (state, event) that mutates the given (forked) state.
The ledger calls `apply_recorded` for each event it records; a node rebuilding its state
from its own event store and receipts calls `fold_block` per block and reaches the same
state without re-running handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from domain import events as ev
from domain import state as t
from domain.names import ascii_lower
from domain.records import BranchProtection, Org, Repo, Team, Token, User, UserKey
from domain.state import LedgerState


def start_chain(state: LedgerState, chain_id: str) -> None:
    state.put(t.META, "chain_id", chain_id)


def finish_block(state: LedgerState, height: int, app_hash: bytes) -> None:
    state.put(t.META, "height", height)
    state.put(t.META, "app_hash", app_hash)


def mark_applied(state: LedgerState, tx_id_hex: str) -> None:
    state.put(t.APPLIED, bytes.fromhex(tx_id_hex), True)


def apply_recorded(state: LedgerState, recorded: ev.RecordedEvent) -> None:
    """Fold a recorded event: its payload, and its aggregate's version."""
    state.put(t.VERSIONS, recorded.aggregate_id, recorded.version)
    apply_event(state, recorded.payload())


def fold_block(
    state: LedgerState,
    height: int,
    app_hash: bytes,
    tx_ids: Iterable[str],
    events: Iterable[ev.RecordedEvent],
) -> None:
    """Re-apply a stored block outcome (every receipt's tx id and the block's events)."""
    for tx_id in tx_ids:
        mark_applied(state, tx_id)
    for recorded in events:
        apply_recorded(state, recorded)
    finish_block(state, height, app_hash)


def apply_event(state: LedgerState, event: ev.Event) -> None:
    fold = _APPLY.get(type(event))
    if fold is None:
        raise ValueError(f"no fold for event type {event.type}; add one to domain.evolve")
    fold(state, event)


# -- users, keys, tokens ---------------------------------------------------------


def _user_created(s: LedgerState, e: ev.UserCreated) -> None:
    s.put(t.USERS, e.user_id, User(e.user_id, e.login, e.email, e.site_admin))
    s.put(t.USER_LOGINS, ascii_lower(e.login), e.user_id)
    if e.site_admin:
        s.group_mut(t.G_SITE_ADMINS, "")[e.user_id] = True


def _user_key_added(s: LedgerState, e: ev.UserKeyAdded) -> None:
    s.group_mut(t.G_USER_KEYS, e.user_id)[e.key_id] = UserKey(e.key_id, e.user_id, e.public_key, e.title)
    s.put(t.KEY_OWNERS, e.key_id, e.user_id)


def _token_issued(s: LedgerState, e: ev.TokenIssued) -> None:
    token_hash = ascii_lower(e.token_hash)
    s.put(t.TOKENS, token_hash, Token(e.token_id, e.user_id, token_hash, tuple(e.scopes), e.note, False))
    s.put(t.TOKEN_IDS, e.token_id, token_hash)
    s.group_mut(t.G_USER_TOKENS, e.user_id)[e.token_id] = token_hash


def _token_revoked(s: LedgerState, e: ev.TokenRevoked) -> None:
    token = s.token_by_id(e.token_id)
    if token is not None:
        s.put(
            t.TOKENS,
            token.token_hash,
            Token(token.token_id, token.user_id, token.token_hash, token.scopes, token.note, True),
        )


# -- organizations and teams -----------------------------------------------------


def _org_created(s: LedgerState, e: ev.OrgCreated) -> None:
    s.put(t.ORGS, e.org_id, Org(e.org_id, e.login, e.created_by))
    s.put(t.ORG_LOGINS, ascii_lower(e.login), e.org_id)


def _org_member_set(s: LedgerState, e: ev.OrgMemberSet) -> None:
    s.group_mut(t.G_ORG_MEMBERS, e.org_id)[e.user_id] = e.role
    s.group_mut(t.G_USER_ORGS, e.user_id)[e.org_id] = e.role


def _org_member_removed(s: LedgerState, e: ev.OrgMemberRemoved) -> None:
    s.group_mut(t.G_ORG_MEMBERS, e.org_id).pop(e.user_id, None)
    s.group_mut(t.G_USER_ORGS, e.user_id).pop(e.org_id, None)


def _team_created(s: LedgerState, e: ev.TeamCreated) -> None:
    s.put(t.TEAMS, e.team_id, Team(e.team_id, e.org_id, e.name, e.slug, e.description, e.privacy))
    s.put(t.TEAM_SLUGS, (e.org_id, e.slug), e.team_id)
    s.group_mut(t.G_ORG_TEAMS, e.org_id)[e.team_id] = e.slug


def _team_member_set(s: LedgerState, e: ev.TeamMemberSet) -> None:
    s.group_mut(t.G_TEAM_MEMBERS, e.team_id)[e.user_id] = e.role
    s.group_mut(t.G_USER_TEAMS, e.user_id)[e.team_id] = e.role


def _team_member_removed(s: LedgerState, e: ev.TeamMemberRemoved) -> None:
    s.group_mut(t.G_TEAM_MEMBERS, e.team_id).pop(e.user_id, None)
    s.group_mut(t.G_USER_TEAMS, e.user_id).pop(e.team_id, None)


def _team_repo_permission_set(s: LedgerState, e: ev.TeamRepoPermissionSet) -> None:
    s.group_mut(t.G_TEAM_REPOS, e.team_id)[e.repo_id] = e.permission
    s.group_mut(t.G_REPO_TEAMS, e.repo_id)[e.team_id] = e.permission


def _team_repo_removed(s: LedgerState, e: ev.TeamRepoRemoved) -> None:
    s.group_mut(t.G_TEAM_REPOS, e.team_id).pop(e.repo_id, None)
    s.group_mut(t.G_REPO_TEAMS, e.repo_id).pop(e.team_id, None)


# -- repositories ----------------------------------------------------------------


def _repo_created(s: LedgerState, e: ev.RepoCreated) -> None:
    repo = Repo(
        e.repo_id,
        e.owner_id,
        e.owner_type,
        e.owner_login,
        e.name,
        e.description,
        e.private,
        e.default_branch,
        False,
    )
    s.put(t.REPOS, e.repo_id, repo)
    s.put(t.REPO_NAMES, (ascii_lower(e.owner_login), ascii_lower(e.name)), e.repo_id)
    _name_taken(s, e.owner_login, e.name, e.repo_id)
    s.group_mut(t.G_OWNER_REPOS, e.owner_id)[e.repo_id] = True


def _name_taken(s: LedgerState, owner_login: str, name: str, repo_id: str) -> None:
    """Record who holds owner/name from this block on ("" = nobody), for `LedgerState.repo_named_at`.

    Events are folded before `finish_block` moves the height, so this block is height + 1.
    """
    s.group_mut(t.G_REPO_NAME_HISTORY, (ascii_lower(owner_login), ascii_lower(name)))[s.height + 1] = repo_id


_REPO_FIELDS: dict[str, type] = {
    "name": str,
    "description": str,
    "private": bool,
    "default_branch": str,
    "archived": bool,
}


def _repo_updated(s: LedgerState, e: ev.RepoUpdated) -> None:
    repo = s.repo(e.repo_id)
    if repo is None:
        return
    fields: dict[str, Any] = {
        "repo_id": repo.repo_id,
        "owner_id": repo.owner_id,
        "owner_type": repo.owner_type,
        "owner_login": repo.owner_login,
        "name": repo.name,
        "description": repo.description,
        "private": repo.private,
        "default_branch": repo.default_branch,
        "archived": repo.archived,
    }
    for key in sorted(e.changes):
        if key in _REPO_FIELDS and isinstance(e.changes[key], _REPO_FIELDS[key]):
            fields[key] = e.changes[key]
    updated = Repo(**fields)
    if updated.name != repo.name:
        s.delete(t.REPO_NAMES, (ascii_lower(repo.owner_login), ascii_lower(repo.name)))
        s.put(t.REPO_NAMES, (ascii_lower(repo.owner_login), ascii_lower(updated.name)), repo.repo_id)
        _name_taken(s, repo.owner_login, repo.name, "")
        _name_taken(s, repo.owner_login, updated.name, repo.repo_id)
    s.put(t.REPOS, repo.repo_id, updated)


def _repo_deleted(s: LedgerState, e: ev.RepoDeleted) -> None:
    """A deleted repository disappears with every grant on it (collaborators and team access),
    its refs and its branch protections."""
    repo = s.repo(e.repo_id)
    if repo is None:
        return
    s.delete(t.REPOS, repo.repo_id)
    s.delete(t.REPO_NAMES, (ascii_lower(repo.owner_login), ascii_lower(repo.name)))
    _name_taken(s, repo.owner_login, repo.name, "")
    s.group_mut(t.G_OWNER_REPOS, repo.owner_id).pop(repo.repo_id, None)
    s.group_mut(t.G_COLLABORATORS, repo.repo_id).clear()
    repo_teams = s.group_mut(t.G_REPO_TEAMS, repo.repo_id)
    for team_id in sorted(repo_teams, key=str):
        s.group_mut(t.G_TEAM_REPOS, team_id).pop(repo.repo_id, None)
    repo_teams.clear()
    for table in (t.G_REFS, t.G_BRANCH_PROTECTION, t.G_REPO_PACKS):
        if s.group(table, repo.repo_id):
            s.group_mut(table, repo.repo_id).clear()


def _collaborator_set(s: LedgerState, e: ev.CollaboratorSet) -> None:
    s.group_mut(t.G_COLLABORATORS, e.repo_id)[e.user_id] = e.permission


def _collaborator_removed(s: LedgerState, e: ev.CollaboratorRemoved) -> None:
    s.group_mut(t.G_COLLABORATORS, e.repo_id).pop(e.user_id, None)


# -- refs and branch protection --------------------------------------------------


def _refs_updated(s: LedgerState, e: ev.RefsUpdated) -> None:
    if s.repo(e.repo_id) is None:
        return  # never in a valid log (the handler checks); ignored like RepoUpdated
    if e.pack_digest:
        packs = s.group_mut(t.G_REPO_PACKS, e.repo_id)
        packs.setdefault(e.pack_digest, len(packs))
    refs = s.group_mut(t.G_REFS, e.repo_id)
    for update in e.updates:
        if update["new"] == ev.ZERO_SHA:
            refs.pop(update["ref"], None)
        else:
            refs[update["ref"]] = update["new"]


def _branch_protection_set(s: LedgerState, e: ev.BranchProtectionSet) -> None:
    if s.repo(e.repo_id) is None:
        return
    s.group_mut(t.G_BRANCH_PROTECTION, e.repo_id)[e.branch] = BranchProtection(
        e.repo_id,
        e.branch,
        e.allow_force_pushes,
        e.allow_deletions,
        e.required_approving_review_count,
        tuple(sorted(e.restrict_pushers)),
    )


def _branch_protection_removed(s: LedgerState, e: ev.BranchProtectionRemoved) -> None:
    s.group_mut(t.G_BRANCH_PROTECTION, e.repo_id).pop(e.branch, None)


_APPLY: dict[type[ev.Event], Callable[[LedgerState, Any], None]] = {
    ev.UserCreated: _user_created,
    ev.UserKeyAdded: _user_key_added,
    ev.TokenIssued: _token_issued,
    ev.TokenRevoked: _token_revoked,
    ev.OrgCreated: _org_created,
    ev.OrgMemberSet: _org_member_set,
    ev.OrgMemberRemoved: _org_member_removed,
    ev.TeamCreated: _team_created,
    ev.TeamMemberSet: _team_member_set,
    ev.TeamMemberRemoved: _team_member_removed,
    ev.TeamRepoPermissionSet: _team_repo_permission_set,
    ev.TeamRepoRemoved: _team_repo_removed,
    ev.RepoCreated: _repo_created,
    ev.RepoUpdated: _repo_updated,
    ev.RepoDeleted: _repo_deleted,
    ev.CollaboratorSet: _collaborator_set,
    ev.CollaboratorRemoved: _collaborator_removed,
    ev.RefsUpdated: _refs_updated,
    ev.BranchProtectionSet: _branch_protection_set,
    ev.BranchProtectionRemoved: _branch_protection_removed,
}
