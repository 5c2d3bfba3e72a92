"""The event catalogue: every fact the ledger can record.

Events are immutable pydantic models holding only JSON-safe values (str, int,
bool, None, lists and dicts of those: never floats), so their canonical JSON is
the same bytes on every node. `aggregate` names the field holding the id of
the aggregate the event belongs to; the ledger assigns per-aggregate versions.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

Permission = Literal["read", "triage", "write", "maintain", "admin"]
OrgRole = Literal["owner", "member"]
TeamRole = Literal["member", "maintainer"]
OwnerType = Literal["User", "Organization"]

PERMISSION_ORDER: tuple[str, ...] = ("read", "triage", "write", "maintain", "admin")


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    aggregate: ClassVar[str]

    @property
    def type(self) -> str:
        return type(self).__name__

    def aggregate_id(self) -> str:
        value = getattr(self, self.aggregate)
        assert isinstance(value, str)
        return value


# Ids are canonical UUID strings (uuid5 derived from the transaction; see domain.ids).


class UserCreated(Event):
    aggregate = "user_id"
    user_id: str
    login: str
    email: str
    site_admin: bool


class UserKeyAdded(Event):
    aggregate = "user_id"
    user_id: str
    key_id: str
    public_key: str  # hex Ed25519
    title: str


class TokenIssued(Event):
    aggregate = "user_id"
    user_id: str
    token_id: str
    token_hash: str  # hex sha256 of the token; the token itself never enters the log
    scopes: list[str]
    note: str


class TokenRevoked(Event):
    aggregate = "user_id"
    user_id: str
    token_id: str


class OrgCreated(Event):
    aggregate = "org_id"
    org_id: str
    login: str
    created_by: str  # user id


class OrgMemberSet(Event):
    aggregate = "org_id"
    org_id: str
    user_id: str
    role: OrgRole


class OrgMemberRemoved(Event):
    aggregate = "org_id"
    org_id: str
    user_id: str


class TeamCreated(Event):
    aggregate = "team_id"
    team_id: str
    org_id: str
    name: str
    slug: str
    description: str
    privacy: Literal["secret", "closed"]


class TeamMemberSet(Event):
    aggregate = "team_id"
    team_id: str
    user_id: str
    role: TeamRole


class TeamMemberRemoved(Event):
    aggregate = "team_id"
    team_id: str
    user_id: str


class TeamRepoPermissionSet(Event):
    aggregate = "team_id"
    team_id: str
    repo_id: str
    permission: Permission


class TeamRepoRemoved(Event):
    aggregate = "team_id"
    team_id: str
    repo_id: str


class RepoCreated(Event):
    aggregate = "repo_id"
    repo_id: str
    owner_id: str
    owner_type: OwnerType
    owner_login: str
    name: str
    description: str
    private: bool
    default_branch: str


class RepoUpdated(Event):
    """Only the keys present in `changes` changed: name, description, private, default_branch, archived."""

    aggregate = "repo_id"
    repo_id: str
    changes: dict[str, str | bool]


class RepoDeleted(Event):
    aggregate = "repo_id"
    repo_id: str


class CollaboratorSet(Event):
    aggregate = "repo_id"
    repo_id: str
    user_id: str
    permission: Permission


class CollaboratorRemoved(Event):
    aggregate = "repo_id"
    repo_id: str
    user_id: str


ZERO_SHA = "0" * 40  # a ref's old value when it did not exist, or its new value when deleted


class RefsUpdated(Event):
    """A push applied: every update in `updates` ({"ref", "old", "new"}, 40-hex shas) took effect.

    `old` is the value the ref had (ZERO_SHA: it did not exist) and `new` the value it has now
    (ZERO_SHA: deleted). `pack_digest` names the pack that carried the new objects ("" if none).
    """

    aggregate = "repo_id"
    repo_id: str
    pusher_id: str
    pack_digest: str
    updates: list[dict[str, str]]


class BranchProtectionSet(Event):
    """The whole protection of `branch` (a branch name without refs/heads/), replacing any before."""

    aggregate = "repo_id"
    repo_id: str
    branch: str
    allow_force_pushes: bool
    allow_deletions: bool
    required_approving_review_count: int
    restrict_pushers: list[str]  # user ids, sorted; empty = anyone with write may push


class BranchProtectionRemoved(Event):
    aggregate = "repo_id"
    repo_id: str
    branch: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        UserCreated,
        UserKeyAdded,
        TokenIssued,
        TokenRevoked,
        OrgCreated,
        OrgMemberSet,
        OrgMemberRemoved,
        TeamCreated,
        TeamMemberSet,
        TeamMemberRemoved,
        TeamRepoPermissionSet,
        TeamRepoRemoved,
        RepoCreated,
        RepoUpdated,
        RepoDeleted,
        CollaboratorSet,
        CollaboratorRemoved,
        RefsUpdated,
        BranchProtectionSet,
        BranchProtectionRemoved,
    )
}


class RecordedEvent(BaseModel):
    """An event as the ledger recorded it: the payload plus where and when it happened."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    aggregate_id: str
    version: int  # 1-based, per aggregate
    type: str
    data: dict[str, object]
    height: int  # block height
    tx_id: str  # hex
    tx_index: int  # position of the transaction in its block
    event_index: int  # position of the event within its transaction
    timestamp_ms: int  # block timestamp
    actor: str  # user id of the actor, or "" for genesis

    def payload(self) -> Event:
        return EVENT_TYPES[self.type].model_validate(self.data, strict=False)


def parse_uuid(value: str) -> UUID:
    return UUID(value)
