"""The payload of every command kind, validated strictly (unknown fields and wrong types are 422)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from domain.events import OrgRole, Permission, TeamRole
from domain.names import (
    branch_name_error,
    branch_name_error_v2,
    email_error,
    email_error_v2,
    login_error,
    ref_name_error,
    repo_name_error,
    team_name_error,
    team_name_error_v2,
)
from domain.rules import LATEST, Rules

Check = Callable[[str], str | None]


def rules_of(info: ValidationInfo) -> Rules:
    """The protocol rules a payload is validated under (`parse_payload` passes them as context)."""
    context = info.context
    rules = context.get("rules") if isinstance(context, dict) else None
    return rules if isinstance(rules, Rules) else LATEST


def _rule(check: Check, check_v2: Check | None = None) -> AfterValidator:
    """Turn a `domain.names` check into a pydantic validator (its sentence becomes the 422 message).

    `check_v2` replaces `check` from protocol version 2 on.
    """

    def validate(value: str, info: ValidationInfo) -> str:
        use = check_v2 if check_v2 is not None and rules_of(info).version >= 2 else check
        error = use(value)
        if error is not None:
            raise ValueError(error)
        return value

    return AfterValidator(validate)


Login = Annotated[str, _rule(login_error)]
Email = Annotated[str, _rule(email_error, email_error_v2)]
RepoName = Annotated[str, _rule(repo_name_error)]
TeamName = Annotated[str, _rule(team_name_error, team_name_error_v2)]
Branch = Annotated[str, _rule(branch_name_error, branch_name_error_v2)]
ProtectedBranch = Annotated[
    str,
    _rule(lambda name: branch_name_error(name, "branch"), lambda name: branch_name_error_v2(name, "branch")),
]
GitRef = Annotated[str, _rule(ref_name_error)]  # refs/heads/... or refs/tags/...
Sha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]  # a git object id; 40 zeros = no object
PackDigest = Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]  # sha256 of the pack, "" = none
Ref = Annotated[str, Field(min_length=1, max_length=100)]  # a name that must already exist
Hex32 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]  # 32 bytes, lowercase hex
Text = Annotated[str, Field(max_length=1024)]


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class UserCreate(Payload):
    login: Login
    email: Email


class UserAddKey(Payload):
    login: Ref
    public_key: Hex32
    title: Annotated[str, Field(max_length=256)] = ""


class TokenIssue(Payload):
    login: Ref
    token_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]
    token_hash: Hex32
    scopes: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=64)] = []
    note: Text = ""

    @field_validator("scopes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("scopes must not repeat")
        return v


class TokenRevoke(Payload):
    login: Ref
    token_id: Annotated[str, Field(min_length=1, max_length=128)]


class OrgCreate(Payload):
    login: Login
    admin: Ref


class OrgSetMembership(Payload):
    org: Ref
    user: Ref
    role: OrgRole = "member"


class OrgRemoveMember(Payload):
    org: Ref
    user: Ref


class TeamCreate(Payload):
    org: Ref
    name: TeamName
    description: Text = ""
    privacy: Literal["secret", "closed"] = "secret"


class TeamSetMembership(Payload):
    org: Ref
    team_slug: Ref
    user: Ref
    role: TeamRole = "member"


class TeamRemoveMember(Payload):
    org: Ref
    team_slug: Ref
    user: Ref


class TeamSetRepoPermission(Payload):
    org: Ref
    team_slug: Ref
    owner: Ref
    repo: Ref
    permission: Permission


class TeamRemoveRepo(Payload):
    org: Ref
    team_slug: Ref
    owner: Ref
    repo: Ref


class RepoCreate(Payload):
    owner: Ref
    name: RepoName
    description: Text = ""
    private: bool = False
    default_branch: Branch = "main"


class RepoUpdate(Payload):
    """Fields left out (or null) stay as they are."""

    owner: Ref
    repo: Ref
    name: RepoName | None = None
    description: Text | None = None
    private: bool | None = None
    default_branch: Branch | None = None
    archived: bool | None = None


class RepoDelete(Payload):
    owner: Ref
    repo: Ref


class CollaboratorSet(Payload):
    owner: Ref
    repo: Ref
    user: Ref
    permission: Permission = "write"


class CollaboratorRemove(Payload):
    owner: Ref
    repo: Ref
    user: Ref


# -- git refs and branch protection ----------------------------------------------------

MAX_PUSH_UPDATES = 1000
#: Longest ref name a payload may carry (characters); `domain.refs` refuses long ones per ref.
MAX_REF_CHARS = 4096
MAX_REVIEW_COUNT = 6  # GitHub's upper bound for required approving reviews
MAX_RESTRICT_PUSHERS = 100


class RefUpdate(Payload):
    """Set `ref` from `old` to `new` (40 zeros: create when old, delete when new)."""

    ref: GitRef
    old: Sha
    new: Sha
    force: bool = False  # accept a non-fast-forward (unless branch protection forbids it)

    @field_validator("new")
    @classmethod
    def _changes(cls, new: str, info: ValidationInfo) -> str:
        if info.data.get("old") == new:
            raise ValueError("new must differ from old")
        return new


class PushRefsV1(Payload):
    """A push under protocol version 1: every ref must be a valid branch or tag, or the whole
    payload is refused (422), and the push is all or nothing."""

    owner: Ref
    repo: Ref
    pack_digest: PackDigest = ""
    updates: Annotated[list[RefUpdate], Field(min_length=1, max_length=MAX_PUSH_UPDATES)]

    @field_validator("updates")
    @classmethod
    def _unique_refs(cls, updates: list[RefUpdate]) -> list[RefUpdate]:
        if len({u.ref for u in updates}) != len(updates):
            raise ValueError("a ref may appear only once in a push")
        return updates


class PushRefUpdate(Payload):
    """One ref of a push (protocol version 2). The name is only bounded here: the handler
    refuses a name git would refuse for that ref alone (`domain.refs`), not the whole push."""

    ref: Annotated[str, Field(min_length=1, max_length=MAX_REF_CHARS)]
    old: Sha
    new: Sha
    force: bool = False  # accept a non-fast-forward (unless branch protection forbids it)

    @field_validator("new")
    @classmethod
    def _changes(cls, new: str, info: ValidationInfo) -> str:
        if info.data.get("old") == new:
            raise ValueError("new must differ from old")
        return new


class PushRefs(Payload):
    """A push: each ref is decided on its own unless `atomic` (git push --atomic) asks for
    all or nothing."""

    owner: Ref
    repo: Ref
    pack_digest: PackDigest = ""
    atomic: bool = False
    updates: Annotated[list[PushRefUpdate], Field(min_length=1, max_length=MAX_PUSH_UPDATES)]

    @field_validator("updates")
    @classmethod
    def _unique_refs(cls, updates: list[PushRefUpdate]) -> list[PushRefUpdate]:
        if len({u.ref for u in updates}) != len(updates):
            raise ValueError("a ref may appear only once in a push")
        return updates


class BranchProtectionSet(Payload):
    """The whole protection of a branch: fields left out take their defaults (as GitHub's PUT)."""

    owner: Ref
    repo: Ref
    branch: ProtectedBranch
    allow_force_pushes: bool = False
    allow_deletions: bool = False
    required_approving_review_count: Annotated[int, Field(ge=0, le=MAX_REVIEW_COUNT)] = 0
    restrict_pushers: Annotated[list[Ref], Field(max_length=MAX_RESTRICT_PUSHERS)] = []


class BranchProtectionRemove(Payload):
    owner: Ref
    repo: Ref
    branch: ProtectedBranch
