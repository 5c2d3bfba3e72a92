"""Random pushes and branch-protection changes replay to the same bytes however blocks are run.

Like tests/test_ledger_determinism.py, for the git commands: the same blocks executed
twice from genesis, merged block by block, executed speculatively on unmerged forks, and
rebuilt by folding the stored events all give identical receipts, events, app hashes and
state (the GitView is the same fixed commit graph for every run).
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.git_view import MemoryGitView
from commands.ledger import BlockContext, BlockResult, execute_block
from domain.canonical import canonical_json
from domain.events import ZERO_SHA
from domain.evolve import fold_block
from domain.ids import derive_id
from domain.state import LedgerState
from tests.test_ledger_support import (
    ADMIN,
    CHAIN_ID,
    FULL_SCOPES,
    GENESIS_MS,
    VALIDATORS,
    Chain,
    genesis,
    token_hash,
)

USERS = ("alice", "bob", "carol")


def _sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


PACK = hashlib.sha256(b"p1").hexdigest()
# a <- b <- c(pack) ; a <- d
GRAPH = {"a": (), "b": ("a",), "d": ("a",)}
SHAS = st.sampled_from((ZERO_SHA, _sha("a"), _sha("b"), _sha("c"), _sha("d"), _sha("x")))
#: "current": the old value the ref has if every earlier push succeeded (most pushes are then not stale).
OLDS = st.one_of(st.just("current"), st.just("current"), st.just("current"), SHAS)
REFS = st.sampled_from(("refs/heads/main", "refs/heads/main", "refs/heads/dev", "refs/tags/v1"))


def _ref_of(update: Any) -> str:
    return str(update["ref"])


UPDATE = st.fixed_dictionaries({"ref": REFS, "old": OLDS, "new": SHAS, "force": st.booleans()})
PUSH = st.tuples(
    st.just("git.push_refs"),
    st.fixed_dictionaries(
        {
            "owner": st.just("alice"),
            "repo": st.just("r"),
            "pack_digest": st.sampled_from(("", PACK)),
            "updates": st.lists(UPDATE, min_size=1, max_size=3, unique_by=_ref_of),
        }
    ),
)
PROTECT = st.tuples(
    st.just("repo.set_branch_protection"),
    st.fixed_dictionaries(
        {
            "owner": st.just("alice"),
            "repo": st.just("r"),
            "branch": st.sampled_from(("main", "dev")),
            "allow_force_pushes": st.booleans(),
            "allow_deletions": st.booleans(),
            "required_approving_review_count": st.sampled_from((0, 0, 1)),
            "restrict_pushers": st.sampled_from(([], [], ["bob"], ["carol", "bob"])),
        }
    ),
)
UNPROTECT = st.tuples(
    st.just("repo.remove_branch_protection"),
    st.fixed_dictionaries({"owner": st.just("alice"), "repo": st.just("r"), "branch": st.just("main")}),
)
ARCHIVE = st.tuples(
    st.just("repo.update"),
    st.fixed_dictionaries(
        {"owner": st.just("alice"), "repo": st.just("r"), "archived": st.sampled_from((False, False, True))}
    ),
)
PUSHERS = st.sampled_from(("alice", "bob", "bob", "carol"))
ADMINS = st.sampled_from(("alice", "alice", "alice", "bob"))
OPS = st.one_of(
    st.tuples(PUSHERS, PUSH),
    st.tuples(PUSHERS, PUSH),
    st.tuples(PUSHERS, PUSH),
    st.tuples(ADMINS, st.one_of(PROTECT, UNPROTECT, ARCHIVE)),
)
BLOCKS = st.lists(st.lists(OPS, max_size=5), min_size=1, max_size=5)


def _build(
    blocks: list[list[tuple[str, tuple[str, dict[str, Any]]]]],
) -> tuple[list[list[bytes]], MemoryGitView]:
    chain = Chain()
    setup: list[bytes] = []
    for user in USERS:
        chain.tokens[user] = f"tok-{user}"
        setup.append(chain.node_tx(ADMIN, "user.create", {"login": user, "email": f"{user}@example.com"}))
        setup.append(
            chain.node_tx(
                ADMIN,
                "token.issue",
                {
                    "login": user,
                    "token_id": f"tok-{user}",
                    "token_hash": token_hash(user),
                    "scopes": list(FULL_SCOPES),
                },
            )
        )
    create = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"})
    setup.append(create)
    for user, perm in (("bob", "write"), ("carol", "maintain")):
        grant = {"owner": "alice", "repo": "r", "user": user, "permission": perm}
        setup.append(chain.node_tx("alice", "collaborator.set", grant))
    repo_id = derive_id(hashlib.sha256(create).hexdigest(), 0)
    view = MemoryGitView()
    for name, parents in GRAPH.items():
        view.add_commit(repo_id, _sha(name), [_sha(p) for p in parents])
    view.add_commit(repo_id, _sha("c"), [_sha("b")], pack=PACK)
    out = [setup]
    model: dict[str, str] = {}  # ref -> sha, as if every push succeeded
    for block in blocks:
        txs = []
        for actor, (kind, payload) in block:
            if kind == "git.push_refs":
                updates: list[dict[str, Any]] = []
                for u in payload["updates"]:
                    old = model.get(u["ref"], ZERO_SHA) if u["old"] == "current" else u["old"]
                    updates.append({**u, "old": old})
                    model[u["ref"]] = u["new"]
                payload = {**payload, "updates": updates}
            txs.append(chain.node_tx(actor, kind, payload))
        out.append(txs)
    return out, view


def _ctx(height: int, view: MemoryGitView) -> BlockContext:
    return BlockContext(CHAIN_ID, height, GENESIS_MS + 1000 * height, VALIDATORS, view)


def _fingerprint(results: list[BlockResult]) -> list[tuple[bytes, list[bytes], list[bytes]]]:
    return [
        (
            r.app_hash,
            [canonical_json(rec.to_json()) for rec in r.receipts],
            [canonical_json(e.model_dump()) for e in r.events],
        )
        for r in results
    ]


def _run_chained(blocks: list[list[bytes]], view: MemoryGitView) -> tuple[list[BlockResult], LedgerState]:
    state = genesis().state
    results = []
    for txs in blocks:
        r = execute_block(state, state.app_hash, _ctx(state.height + 1, view), txs)
        results.append(r)
        state = r.state
    return results, state


def _run_merging(blocks: list[list[bytes]], view: MemoryGitView) -> tuple[list[BlockResult], LedgerState]:
    base = genesis().state
    results = []
    for txs in blocks:
        r = execute_block(base, base.app_hash, _ctx(base.height + 1, view), txs)
        r.state.merge_into_parent()
        results.append(r)
    return results, base


def _run_speculating(blocks: list[list[bytes]], view: MemoryGitView) -> tuple[list[BlockResult], LedgerState]:
    base = genesis().state
    results: list[BlockResult] = []
    pending: BlockResult | None = None
    for txs in blocks:
        parent = base if pending is None else pending.state
        execute_block(parent, parent.app_hash, _ctx(parent.height + 1, view), list(reversed(txs)))  # a loser
        current = execute_block(parent, parent.app_hash, _ctx(parent.height + 1, view), txs)
        if pending is not None:
            pending.state.merge_into_parent()
            results.append(pending)
        pending = current
    assert pending is not None
    pending.state.merge_into_parent()
    results.append(pending)
    return results, base


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOCKS)
def test_git_commands_replay_deterministically(blocks: Any) -> None:
    txs, view = _build(blocks)
    first, first_state = _run_chained(txs, view)
    reference = _fingerprint(first)
    snapshot = first_state.snapshot()
    for run in (_run_chained, _run_merging, _run_speculating):
        results, state = run(txs, view)
        assert _fingerprint(results) == reference
        assert state.snapshot() == snapshot
    folded = genesis().state
    for r in first:
        fork = folded.fork()
        fold_block(fork, r.height, r.app_hash, [rec.tx_id for rec in r.receipts], r.events)
        fork.merge_into_parent()
    assert folded.snapshot() == snapshot
    assert all(r.ok for r in first[0].receipts)


def test_the_setup_creates_the_repository_the_view_knows() -> None:
    txs, view = _build([[("alice", ("git.push_refs", {"owner": "alice", "repo": "r", "updates": []}))]])
    results, state = _run_merging(txs, view)
    repo = state.repo_by_name("alice", "r")
    assert repo is not None and repo.repo_id in view.repos
    push = [{"ref": "refs/heads/main", "old": ZERO_SHA, "new": _sha("a")}]
    txs, view = _build([[("bob", ("git.push_refs", {"owner": "alice", "repo": "r", "updates": push}))]])
    results, state = _run_merging(txs, view)
    assert results[1].receipts[0].ok and state.refs(repo.repo_id) == (("refs/heads/main", _sha("a")),)
