"""The command registry: kind -> payload model and handler, and `decide`, the single entry point.

`decide` validates the payload (422 with the offending fields), checks that the token a
node attested the actor with has the scopes the command needs (from protocol version 2,
`commands.scopes`), and runs the handler against the state at this height. It never does
I/O and never reads anything but its arguments, so every node reaches the same decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from commands import git, orgs, repos, scopes, teams, users
from commands import payloads as p
from commands.decision import BAD_TRANSACTION, INVALID, Decision, HandlerContext, Rejection
from commands.envelope import Transaction, format_validation_error
from domain.events import (
    Event,
    OrgCreated,
    RefsUpdated,
    RepoCreated,
    TeamCreated,
    TokenIssued,
    UserCreated,
    UserKeyAdded,
)
from domain.rules import LATEST, Rules
from domain.state import LedgerState


@dataclass(frozen=True, slots=True)
class Command:
    payload: type[p.Payload]
    handle: Callable[[LedgerState, Any, HandlerContext], Decision]
    #: The payload model under protocol version 1, where it differs (see `domain.rules`).
    payload_v1: type[p.Payload] | None = None

    def model(self, rules: Rules) -> type[p.Payload]:
        if rules.version < 2 and self.payload_v1 is not None:
            return self.payload_v1
        return self.payload


COMMANDS: dict[str, Command] = {
    "user.create": Command(p.UserCreate, users.create_user),
    "user.add_key": Command(p.UserAddKey, users.add_key),
    "token.issue": Command(p.TokenIssue, users.issue_token),
    "token.revoke": Command(p.TokenRevoke, users.revoke_token),
    "org.create": Command(p.OrgCreate, orgs.create_org),
    "org.set_membership": Command(p.OrgSetMembership, orgs.set_membership),
    "org.remove_member": Command(p.OrgRemoveMember, orgs.remove_member),
    "team.create": Command(p.TeamCreate, teams.create_team),
    "team.set_membership": Command(p.TeamSetMembership, teams.set_membership),
    "team.remove_member": Command(p.TeamRemoveMember, teams.remove_member),
    "team.set_repo_permission": Command(p.TeamSetRepoPermission, teams.set_repo_permission),
    "team.remove_repo": Command(p.TeamRemoveRepo, teams.remove_repo),
    "repo.create": Command(p.RepoCreate, repos.create_repo),
    "repo.update": Command(p.RepoUpdate, repos.update_repo),
    "repo.delete": Command(p.RepoDelete, repos.delete_repo),
    "collaborator.set": Command(p.CollaboratorSet, repos.set_collaborator),
    "collaborator.remove": Command(p.CollaboratorRemove, repos.remove_collaborator),
    "git.push_refs": Command(p.PushRefs, git.push_refs, p.PushRefsV1),
    "repo.set_branch_protection": Command(p.BranchProtectionSet, git.set_branch_protection),
    "repo.remove_branch_protection": Command(p.BranchProtectionRemove, git.remove_branch_protection),
}


def parse_payload(kind: str, payload: dict[str, Any], rules: Rules = LATEST) -> p.Payload | Rejection:
    """The validated payload model for `kind`, or the rejection the ledger would give (400/422)."""
    command = COMMANDS.get(kind)
    if command is None:
        return Rejection(BAD_TRANSACTION, f"unknown transaction kind {kind!r}")
    try:
        return command.model(rules).model_validate(payload, context={"rules": rules})
    except ValidationError as e:
        return Rejection(INVALID, f"invalid {kind} payload: {format_validation_error(e, 'payload.')}")


def decide(state: LedgerState, tx: Transaction, ctx: HandlerContext) -> Decision:
    """Events for an authenticated transaction, or why it is refused."""
    parsed = parse_payload(tx.kind, tx.payload, ctx.rules)
    if isinstance(parsed, Rejection):
        return parsed
    if ctx.rules.token_scopes and ctx.token_scopes is not None:
        refused = scopes.command_refusal(state, tx.kind, parsed, ctx.actor, ctx.token_scopes)
        if refused is not None:
            return refused
    return COMMANDS[tx.kind].handle(state, parsed, ctx)


def result_of(events: list[Event]) -> dict[str, Any]:
    """The receipt result: ids of what the transaction created, for the API to answer with."""
    for event in events:
        match event:
            case UserCreated():
                return {"user_id": event.user_id}
            case UserKeyAdded():
                return {"key_id": event.key_id}
            case TokenIssued():
                return {"token_id": event.token_id}
            case OrgCreated():
                return {"org_id": event.org_id}
            case TeamCreated():
                return {"team_id": event.team_id, "slug": event.slug}
            case RepoCreated():
                return {"repo_id": event.repo_id}
            case RefsUpdated():
                return git.refs_result(event)
    return {}
