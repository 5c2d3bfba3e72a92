"""Fold a block's events into the final row changes of each read-model table.

Folding first and writing after means one batched write per table per block, whatever
the number of events: a row touched five times in a block is written once, in its
final state. The fold also notes which repositories' ACL rows need recomputing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from domain.events import (
    CollaboratorRemoved,
    CollaboratorSet,
    OrgCreated,
    OrgMemberRemoved,
    OrgMemberSet,
    RecordedEvent,
    RepoCreated,
    RepoDeleted,
    RepoUpdated,
    TeamCreated,
    TeamMemberRemoved,
    TeamMemberSet,
    TeamRepoPermissionSet,
    TeamRepoRemoved,
    UserCreated,
)
from projections.schema import COLUMNS

log = logging.getLogger(__name__)

Key = tuple[str, ...]
Row = tuple[Any, ...]
#: Loads current repository rows (column name -> value) by id, for updates to earlier repos.
RepoLoader = Callable[[Sequence[str]], Mapping[str, dict[str, Any]]]

# What RepoUpdated may change, and the type a value must have to count (as domain.evolve).
_REPO_CHANGEABLE: dict[str, type] = {
    "name": str,
    "description": str,
    "private": bool,
    "default_branch": str,
    "archived": bool,
}


@dataclass
class BlockChanges:
    """Final upserts and deletions per table, plus the scope of ACL recomputation."""

    upserts: dict[str, dict[Key, Row]] = field(default_factory=lambda: {t: {} for t in COLUMNS})
    deletes: dict[str, set[Key]] = field(default_factory=lambda: {t: set() for t in COLUMNS})
    acl_repos: set[str] = field(default_factory=set)
    acl_orgs: set[str] = field(default_factory=set)
    acl_teams: set[str] = field(default_factory=set)
    site_admins: set[str] = field(default_factory=set)
    #: Deleted repositories: their collaborators, team grants, refs and protections go with them.
    deleted_repos: set[str] = field(default_factory=set)

    def upsert(self, table: str, key: Key, row: Row) -> None:
        self.upserts[table][key] = row
        self.deletes[table].discard(key)

    def delete(self, table: str, key: Key) -> None:
        self.upserts[table].pop(key, None)
        self.deletes[table].add(key)

    @property
    def touches_acl(self) -> bool:
        return bool(self.site_admins or self.acl_repos or self.acl_orgs or self.acl_teams)


def repos_to_load(events: Iterable[RecordedEvent]) -> list[str]:
    """Repositories that the events change but did not create: their rows must be read first."""
    created: set[str] = set()
    needed: set[str] = set()
    for e in events:
        if e.type == "RepoCreated":
            created.add(e.aggregate_id)
        elif e.type in ("RepoUpdated", "RepoDeleted") and e.aggregate_id not in created:
            needed.add(e.aggregate_id)
    return sorted(needed)


def _repo_tuple(repo: dict[str, Any]) -> Row:
    return tuple(repo[c] for c in COLUMNS["repos"])


def fold(events: Iterable[RecordedEvent], load_repos: RepoLoader) -> BlockChanges:
    """The table changes that `events`, applied in order, make to the read models."""
    events = list(events)
    out = BlockChanges()
    repos: dict[str, dict[str, Any]] = dict(load_repos(repos_to_load(events)))
    touched_repos: set[str] = set()
    for rec in events:
        e = rec.payload()
        ts = rec.timestamp_ms
        if isinstance(e, UserCreated):
            user: Row = (e.user_id, e.login, e.login.lower(), e.email, e.site_admin, ts, ts)
            out.upsert("users", (e.user_id,), user)
            if e.site_admin:
                out.site_admins.add(e.user_id)
        elif isinstance(e, OrgCreated):
            out.upsert("orgs", (e.org_id,), (e.org_id, e.login, e.login.lower(), ts))
        elif isinstance(e, OrgMemberSet):
            out.upsert("org_members", (e.org_id, e.user_id), (e.org_id, e.user_id, e.role))
            out.acl_orgs.add(e.org_id)
        elif isinstance(e, OrgMemberRemoved):
            out.delete("org_members", (e.org_id, e.user_id))
            out.acl_orgs.add(e.org_id)
        elif isinstance(e, TeamCreated):
            team: Row = (e.team_id, e.org_id, e.name, e.slug, e.description, e.privacy, ts)
            out.upsert("teams", (e.team_id,), team)
        elif isinstance(e, TeamMemberSet):
            out.upsert("team_members", (e.team_id, e.user_id), (e.team_id, e.user_id, e.role))
            out.acl_teams.add(e.team_id)
        elif isinstance(e, TeamMemberRemoved):
            out.delete("team_members", (e.team_id, e.user_id))
            out.acl_teams.add(e.team_id)
        elif isinstance(e, TeamRepoPermissionSet):
            out.upsert("team_repos", (e.team_id, e.repo_id), (e.team_id, e.repo_id, e.permission))
            out.acl_repos.add(e.repo_id)
        elif isinstance(e, TeamRepoRemoved):
            out.delete("team_repos", (e.team_id, e.repo_id))
            out.acl_repos.add(e.repo_id)
        elif isinstance(e, RepoCreated):
            repos[e.repo_id] = {
                "repo_id": e.repo_id,
                "owner_id": e.owner_id,
                "owner_type": e.owner_type,
                "owner_login": e.owner_login,
                "name": e.name,
                "name_lower": e.name.lower(),
                "description": e.description,
                "private": e.private,
                "archived": False,
                "default_branch": e.default_branch,
                "created_at_ms": ts,
                "updated_at_ms": ts,
                "deleted": False,
            }
            touched_repos.add(e.repo_id)
        elif isinstance(e, RepoUpdated | RepoDeleted):
            repo = repos.get(e.repo_id)
            if repo is None or repo["deleted"]:
                # The ledger's state ignores these too (domain.evolve); never in a valid log.
                log.warning("%s for unknown repository %s at height %d", rec.type, e.repo_id, rec.height)
                continue
            if isinstance(e, RepoUpdated):
                for name, value in e.changes.items():
                    kind = _REPO_CHANGEABLE.get(name)
                    if kind is not None and isinstance(value, kind):
                        repo[name] = value
                repo["name_lower"] = str(repo["name"]).lower()
            else:
                repo["deleted"] = True
                out.deleted_repos.add(e.repo_id)
            repo["updated_at_ms"] = ts
            touched_repos.add(e.repo_id)
        elif isinstance(e, CollaboratorSet):
            out.upsert("collaborators", (e.repo_id, e.user_id), (e.repo_id, e.user_id, e.permission))
            out.acl_repos.add(e.repo_id)
        elif isinstance(e, CollaboratorRemoved):
            out.delete("collaborators", (e.repo_id, e.user_id))
            out.acl_repos.add(e.repo_id)
        # Keys, tokens, refs and branch protection have no read model here: the ledger state
        # answers for them (see api/reads.py).
    for repo_id in sorted(touched_repos):
        out.upsert("repos", (repo_id,), _repo_tuple(repos[repo_id]))
        out.acl_repos.add(repo_id)
    return out
