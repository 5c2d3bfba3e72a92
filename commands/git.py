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
    TOO_LARGE,
    UNAVAILABLE,
    Accepted,
    Decision,
    HandlerContext,
    Rejection,
)
from commands.git_view import GitView
from domain.events import ZERO_SHA, BranchProtectionRemoved, BranchProtectionSet, RefsUpdated
from domain.permissions import WRITE, can
from domain.records import BranchProtection, Repo, User
from domain.refs import HIDDEN_REF, RefNamespace, ref_format_error, same_time_conflict
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
DEFAULT_BRANCH_DELETION = "refusing to delete the current branch"

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
    """Version 1's check of one ref (see `_refusal_v2` for the current rules)."""
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


def push_refs(state: LedgerState, cmd: p.PushRefs | p.PushRefsV1, ctx: HandlerContext) -> Decision:
    if isinstance(cmd, p.PushRefsV1):
        return _push_refs_v1(state, cmd, ctx)
    return _push_refs_v2(state, cmd, ctx)


# -- protocol version 2 ---------------------------------------------------------------

_Refusal = tuple[int, str]


def _push_refs_v2(state: LedgerState, cmd: p.PushRefs, ctx: HandlerContext) -> Decision:
    """Each ref decided on its own, in the payload's order (git receive-pack without --atomic);
    with `atomic`, any refusal refuses them all."""
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
    new_pack = bool(cmd.pack_digest) and cmd.pack_digest not in packs
    if new_pack and ctx.attested_by is None:
        return Rejection(FORBIDDEN, PACK_NOT_RECEIVED)
    if new_pack:
        packs += (cmd.pack_digest,)
        limit = ctx.rules.max_object_bytes
        oversized = ctx.git.oversized_objects(cmd.pack_digest, limit) if limit else []
        if oversized:
            sha, size = oversized[0]
            reason = f"object {sha} is {_size(size)}; this exceeds the maximum object size of {_size(limit)}"
            every = [{"ref": u.ref, "ok": False, "reason": reason} for u in cmd.updates]
            return Rejection(TOO_LARGE, f"push rejected: {reason}", {"refs": every})
    tips = frozenset(sha for _, sha in state.refs(repo.repo_id))
    push = _Push(state, repo, ctx.actor, is_repo_admin(state, ctx.actor, repo), ctx.git, packs, tips)
    names = RefNamespace(ref for ref, _ in state.refs(repo.repo_id))
    refusals: list[_Refusal | None] = []
    if cmd.atomic:
        # One transaction: deletions make room for the creations, which must not clash
        # with each other either.
        for u in cmd.updates:
            if u.new == ZERO_SHA:
                names.remove(u.ref)
        created: list[str] = []
        for u in cmd.updates:
            refusals.append(_refusal_v2(push, u, names, created))
    else:
        for u in cmd.updates:
            refusal = _refusal_v2(push, u, names, None)
            refusals.append(refusal)
            if refusal is None and u.new == ZERO_SHA:
                names.remove(u.ref)
            elif refusal is None:
                names.add(u.ref)
    failed = [i for i, r in enumerate(refusals) if r is not None]
    if cmd.atomic and failed:
        refusals = [r if r is not None else (CONFLICT, ATOMIC_FAILED) for r in refusals]
    refs: list[dict[str, Any]] = [
        {"ref": u.ref, "ok": r is None, "reason": "" if r is None else r[1]}
        for u, r in zip(cmd.updates, refusals, strict=True)
    ]
    accepted = [u for u, r in zip(cmd.updates, refusals, strict=True) if r is None]
    summary = ""
    if failed:
        first = refusals[failed[0]]
        assert first is not None
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        summary = f"{cmd.updates[failed[0]].ref} {first[1]}{more}"
        if not accepted:
            return Rejection(first[0], f"push rejected: {summary}", {"refs": refs})
    event = RefsUpdated(
        repo_id=repo.repo_id,
        pusher_id=ctx.actor.user_id,
        pack_digest=cmd.pack_digest,
        updates=[{"ref": u.ref, "old": u.old, "new": u.new} for u in accepted],
    )
    message = "ok" if not failed else f"{len(failed)} of {len(cmd.updates)} refs refused: {summary}"
    return Accepted([event], {"refs": refs}, message)


def _refusal_v2(
    push: _Push, update: p.PushRefUpdate, names: RefNamespace, created: list[str] | None
) -> _Refusal | None:
    """Why this ref update is refused (code, git's reason), or None if it may go ahead.

    `created`: the refs this atomic push creates before this one (None: not atomic).
    """
    ref = update.ref
    if problem := ref_format_error(ref):
        return (FORBIDDEN if problem == HIDDEN_REF else INVALID, problem)
    repo_id = push.repo.repo_id
    current = push.state.ref(repo_id, ref)
    if (current or ZERO_SHA) != update.old:
        return (CONFLICT, STALE)
    deleting = update.new == ZERO_SHA
    is_branch = ref.startswith(HEADS)
    if deleting and current is not None and ref == HEADS + push.repo.default_branch:
        return (FORBIDDEN, f"{DEFAULT_BRANCH_DELETION}: {ref}")
    if current is None and not deleting:
        if clash := names.conflict(ref):
            return (CONFLICT, clash)
        if created is not None:
            other = next((c for c in created if c.startswith(ref + "/") or ref.startswith(c + "/")), None)
            if other is not None:
                return (CONFLICT, same_time_conflict(other, ref))
            created.append(ref)
    if not deleting:
        present = (
            push.git.has_commit(repo_id, push.packs, update.new, push.tips)
            if is_branch
            else push.git.has_object(repo_id, push.packs, update.new, push.tips)
        )
        if not present:
            return (INVALID, MISSING_OBJECTS)
    protection = push.state.branch_protection(repo_id, ref[len(HEADS) :]) if is_branch else None
    if protection is not None:
        if refusal := _protection_refusal(push, protection, creating=current is None, deleting=deleting):
            return (FORBIDDEN, refusal)
    if current is None or deleting:
        return None
    if ref.startswith(TAGS):
        return None if update.force else (CONFLICT, TAG_EXISTS)
    if push.git.is_ancestor(repo_id, push.packs, current, update.new):
        return None
    if not update.force:
        return (CONFLICT, NON_FAST_FORWARD)
    if protection is not None and not protection.allow_force_pushes:
        return (FORBIDDEN, PROTECTED_FORCE)
    return None


def _size(n: int) -> str:
    """A byte count as git users read it (1.00 GiB, 100 MiB)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if n % size == 0 else f"{value:.2f} {unit}"
    return f"{n} bytes"


def _push_refs_v1(state: LedgerState, cmd: p.PushRefsV1, ctx: HandlerContext) -> Decision:
    """Protocol version 1: all refs or none (kept unchanged so old blocks replay the same)."""
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
