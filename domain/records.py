"""The read-only records that `LedgerState` queries return (frozen, so callers can't mutate state)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    login: str
    email: str
    site_admin: bool


@dataclass(frozen=True, slots=True)
class UserKey:
    key_id: str
    user_id: str
    public_key: str  # hex Ed25519
    title: str


@dataclass(frozen=True, slots=True)
class Token:
    token_id: str
    user_id: str
    token_hash: str  # hex sha256 of the secret token
    scopes: tuple[str, ...]
    note: str
    revoked: bool


@dataclass(frozen=True, slots=True)
class Org:
    org_id: str
    login: str
    created_by: str  # user id


@dataclass(frozen=True, slots=True)
class Team:
    team_id: str
    org_id: str
    name: str
    slug: str
    description: str
    privacy: str  # "secret" | "closed"


@dataclass(frozen=True, slots=True)
class Repo:
    repo_id: str
    owner_id: str
    owner_type: str  # "User" | "Organization"
    owner_login: str
    name: str
    description: str
    private: bool
    default_branch: str
    archived: bool

    @property
    def full_name(self) -> str:
        return f"{self.owner_login}/{self.name}"


@dataclass(frozen=True, slots=True)
class BranchProtection:
    repo_id: str
    branch: str  # without refs/heads/
    allow_force_pushes: bool
    allow_deletions: bool
    required_approving_review_count: int
    restrict_pushers: tuple[str, ...]  # user ids, sorted; empty = no restriction
