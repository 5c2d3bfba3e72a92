"""Handlers for `git push` (ref updates, all or nothing) and branch protection.

A push is checked at apply time against the state at its height, per ref, in this order:

1. compare-and-swap: `old` must be the ref's current value (40 zeros: must not exist),
   else "stale info";
2. objects: `new` must be present (a commit for a branch, any object for a tag, with
   everything it reaches) in the repository's accepted packs plus the push's own pack,
   per the node's `GitView`, else "missing objects";
3. branch protection of refs/heads/<branch> (tags are never protected): a deletion is
   refused unless allow_deletions ("protected branch: deletion not allowed"); when
   `restrict_pushers` is set, only those users and the repository's admins may push
   ("protected branch: not allowed to push"); an update of an existing branch that
   requires approving reviews must go through a pull request ("protected branch: changes
   must be made through a pull request"), creating or (where allowed) deleting it need not;
4. fast-forward: moving an existing branch to a commit that does not descend from its
   current value is refused ("non-fast-forward") unless the update has `force`, and even
   then on a protected branch unless allow_force_pushes ("protected branch: force push not
   allowed"); moving an existing tag needs `force` ("already exists").

A push naming a new pack must be attested by the node that received that pack over
smart HTTP, for this repository, from this pusher: digests are public (they are in the
blocks), so a user-signed transaction naming someone else's pack could otherwise copy
a private repository's objects into one the user can read.

If any ref is refused, nothing changes: the refused refs carry their reason and every
other ref "atomic push failed" (git's words for an atomic push), and the receipt's code is
that of the first refused ref (409 stale info / non-fast-forward / already exists, 422
missing objects, 403 protected branch). The receipt `result` is `{"refs": [{"ref", "ok",
"reason"}, ...]}` in the order of the payload's updates, accepted or refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from commands import payloads as p
from commands.access import ARCHIVED_MESSAGE, find_readable_repo, is_repo_admin, require_repo_admin
from commands.decision import (
    CONFLICT,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    UNAVAILABLE,
    Decision,
    HandlerContext,
    Rejection,
)
from commands.git_view import GitView
from domain.events import ZERO_SHA, BranchProtectionRemoved, BranchProtectionSet, RefsUpdated
from domain.permissions import WRITE, can
from domain.records import BranchProtection, Repo, User
from domain.state import LedgerState

HEADS = "refs/heads/"
TAGS = "refs/tags/"

GIT_UNAVAILABLE = "git objects unavailable"
STALE = "stale info"
MISSING_OBJECTS = "missing objects"
NON_FAST_FORWARD = "non-fast-forward"
TAG_EXISTS = "already exists"
PROTECTED_DELETION = "protected branch: deletion not allowed"
PROTECTED_PUSHERS = "protected branch: not allowed to push"
PROTECTED_REVIEWS = "protected branch: changes must be made through a pull request"
PROTECTED_FORCE = "protected branch: force push not allowed"
ATOMIC_FAILED = "atomic push failed"
PACK_NOT_RECEIVED = "a push that brings objects must be made over git smart HTTP to a node"

#: The receipt code of a refused push, by the reason of its first refused ref.
REASON_CODES: dict[str, int] = {
    STALE: CONFLICT,
    NON_FAST_FORWARD: CONFLICT,
    TAG_EXISTS: CONFLICT,
    MISSING_OBJECTS: INVALID,
    PROTECTED_DELETION: FORBIDDEN,
    PROTECTED_PUSHERS: FORBIDDEN,
    PROTECTED_REVIEWS: FORBIDDEN,
    PROTECTED_FORCE: FORBIDDEN,
}


@dataclass(frozen=True, slots=True)
class _Push:
    """What every ref check needs to know about the push."""

    state: LedgerState
    repo: Repo
    actor: User
    is_admin: bool
    git: GitView
    #: The repository's accepted packs and the push's own: all the objects it may use.
    packs: tuple[str, ...]
    #: The repository's ref tips: complete commits, where connectivity walks may stop.
    tips: frozenset[str]


def _ref_refusal(push: _Push, update: p.RefUpdate) -> str | None:
    """Why this ref update is refused, or None if it may go ahead."""
    repo_id = push.repo.repo_id
    current = push.state.ref(repo_id, update.ref)
    if (current or ZERO_SHA) != update.old:
        return STALE
    deleting = update.new == ZERO_SHA
    is_branch = update.ref.startswith(HEADS)
    if not deleting:
        present = (
            push.git.has_commit(repo_id, push.packs, update.new, push.tips)
            if is_branch
            else push.git.has_object(repo_id, push.packs, update.new, push.tips)
        )
        if not present:
            return MISSING_OBJECTS
    protection = push.state.branch_protection(repo_id, update.ref[len(HEADS) :]) if is_branch else None
    if protection is not None:
        if refusal := _protection_refusal(push, protection, creating=current is None, deleting=deleting):
            return refusal
    if current is None or deleting:
        return None
    if not is_branch:
        return None if update.force else TAG_EXISTS
    if push.git.is_ancestor(repo_id, push.packs, current, update.new):
        return None
    if not update.force:
        return NON_FAST_FORWARD
    if protection is not None and not protection.allow_force_pushes:
        return PROTECTED_FORCE
    return None


def _protection_refusal(
    push: _Push, protection: BranchProtection, *, creating: bool, deleting: bool
) -> str | None:
    if deleting and not protection.allow_deletions:
        return PROTECTED_DELETION
    if (
        protection.restrict_pushers
        and not push.is_admin
        and push.actor.user_id not in protection.restrict_pushers
    ):
        return PROTECTED_PUSHERS
    if protection.required_approving_review_count > 0 and not creating and not deleting:
        return PROTECTED_REVIEWS
    return None


def push_refs(state: LedgerState, cmd: p.PushRefs, ctx: HandlerContext) -> Decision:
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    if repo.archived:
        return Rejection(FORBIDDEN, ARCHIVED_MESSAGE)
    if not can(state, ctx.actor.user_id, repo.repo_id, WRITE):
        return Rejection(FORBIDDEN, f"Permission to {repo.full_name}.git denied to {ctx.actor.login}.")
    if ctx.git is None:
        return Rejection(UNAVAILABLE, GIT_UNAVAILABLE)
    packs = state.repo_packs(repo.repo_id)
    if cmd.pack_digest and cmd.pack_digest not in packs and ctx.attested_by is None:
        # Pack digests are public (blocks are): naming one is not proof of holding its objects.
        # Only a node that received the pack for this repository from this pusher may name it.
        return Rejection(FORBIDDEN, PACK_NOT_RECEIVED)
    if cmd.pack_digest and cmd.pack_digest not in packs:
        packs += (cmd.pack_digest,)
    tips = frozenset(sha for _, sha in state.refs(repo.repo_id))
    push = _Push(state, repo, ctx.actor, is_repo_admin(state, ctx.actor, repo), ctx.git, packs, tips)
    refusals = [_ref_refusal(push, update) for update in cmd.updates]
    first = next((i for i, reason in enumerate(refusals) if reason is not None), None)
    if first is None:
        return [
            RefsUpdated(
                repo_id=repo.repo_id,
                pusher_id=ctx.actor.user_id,
                pack_digest=cmd.pack_digest,
                updates=[{"ref": u.ref, "old": u.old, "new": u.new} for u in cmd.updates],
            )
        ]
    refs: list[dict[str, Any]] = [
        {"ref": u.ref, "ok": False, "reason": reason if reason is not None else ATOMIC_FAILED}
        for u, reason in zip(cmd.updates, refusals, strict=True)
    ]
    reason = refusals[first]
    assert reason is not None
    rejected = sum(1 for r in refusals if r is not None)
    more = f" (and {rejected - 1} more)" if rejected > 1 else ""
    message = f"push rejected: {cmd.updates[first].ref} {reason}{more}"
    return Rejection(REASON_CODES[reason], message, {"refs": refs})


def refs_result(event: RefsUpdated) -> dict[str, Any]:
    """The receipt result of an accepted push: every ref ok, in the payload's order."""
    return {"refs": [{"ref": u["ref"], "ok": True, "reason": ""} for u in event.updates]}


# -- branch protection ---------------------------------------------------------------


def set_branch_protection(state: LedgerState, cmd: p.BranchProtectionSet, ctx: HandlerContext) -> Decision:
    """Repository admins replace a branch's protection (the branch need not exist yet)."""
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    if denied := require_repo_admin(state, ctx.actor, repo):
        return denied
    pushers: set[str] = set()
    for login in cmd.restrict_pushers:
        user = state.user_by_login(login)
        if user is None:
            return Rejection(INVALID, f"restrict_pushers: user {login!r} not found")
        pushers.add(user.user_id)
    wanted = BranchProtection(
        repo.repo_id,
        cmd.branch,
        cmd.allow_force_pushes,
        cmd.allow_deletions,
        cmd.required_approving_review_count,
        tuple(sorted(pushers)),
    )
    if state.branch_protection(repo.repo_id, cmd.branch) == wanted:
        return []
    return [
        BranchProtectionSet(
            repo_id=repo.repo_id,
            branch=cmd.branch,
            allow_force_pushes=cmd.allow_force_pushes,
            allow_deletions=cmd.allow_deletions,
            required_approving_review_count=cmd.required_approving_review_count,
            restrict_pushers=sorted(pushers),
        )
    ]


def remove_branch_protection(
    state: LedgerState, cmd: p.BranchProtectionRemove, ctx: HandlerContext
) -> Decision:
    repo = find_readable_repo(state, ctx.actor, cmd.owner, cmd.repo)
    if isinstance(repo, Rejection):
        return repo
    if denied := require_repo_admin(state, ctx.actor, repo):
        return denied
    if state.branch_protection(repo.repo_id, cmd.branch) is None:
        return Rejection(NOT_FOUND, "Branch not protected")
    return [BranchProtectionRemoved(repo_id=repo.repo_id, branch=cmd.branch)]
