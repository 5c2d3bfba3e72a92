"""Replaying the same blocks gives the same bytes, however the state is forked and merged.

Random blocks of valid and invalid commands from several actors (node attestations with
tokens, user signatures, bad signatures, other chains, replays, garbage) are executed:
- twice from fresh genesis states: identical events, receipts and app hashes;
- by merging each block into the base as it finalizes, and by executing the next block
  speculatively on the unmerged fork (with a competing block discarded): same outcome;
- by folding the stored outcome (receipt tx ids and events) without handlers: same state.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.ledger import BlockResult, execute_block
from domain.canonical import canonical_json
from domain.evolve import fold_block
from tests.test_ledger_support import (
    ADMIN,
    CHAIN_ID,
    FULL_SCOPES,
    GENESIS_MS,
    VALIDATORS,
    Chain,
    genesis,
    token_hash,
    user_public_key,
)

USERS = ("alice", "bob", "carol")
# Repeated entries weight the draw towards names that exist, so most commands reach the handlers.
ACTORS = (ADMIN, ADMIN, "alice", "alice", "alice", "bob", "bob", "carol", "ghost")
LOGINS = st.sampled_from((*USERS, *USERS, ADMIN, "dave", "Dave", "-bad", "acme"))
ORGS = st.sampled_from(("acme", "acme", "acme", "initech", "alice"))
OWNERS = st.sampled_from(("alice", "alice", "bob", "acme", "acme", "acme", "initech", "nobody"))
REPOS = st.sampled_from(("r1", "r1", "R1", "r2", "r2", "r3", "bad name", "x.git"))
TEAMS = st.sampled_from(("Core", "docs", "!!"))
SLUGS = st.sampled_from(("core", "docs"))
PERMS = st.sampled_from(("read", "triage", "write", "maintain", "admin", "bogus"))
BOOLS = st.booleans()


def _cmd(kind: str, **fields: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.fixed_dictionaries(fields).map(lambda payload: (kind, payload))


COMMANDS = st.one_of(
    _cmd("user.create", login=LOGINS, email=st.sampled_from(("d@example.com", "nope"))),
    _cmd("user.add_key", login=LOGINS, public_key=st.sampled_from([user_public_key(u) for u in ("x", "y")])),
    _cmd(
        "token.issue",
        login=LOGINS,
        token_id=st.sampled_from(("t1", "t2", "tok-alice")),
        token_hash=st.sampled_from((token_hash("1"), token_hash("2"))),
    ),
    _cmd("token.revoke", login=LOGINS, token_id=st.sampled_from(("t1", "t1", "t2", "t2", "tok-carol"))),
    _cmd("org.create", login=ORGS, admin=LOGINS),
    _cmd("org.set_membership", org=ORGS, user=LOGINS, role=st.sampled_from(("owner", "member"))),
    _cmd("org.remove_member", org=ORGS, user=LOGINS),
    _cmd("team.create", org=ORGS, name=TEAMS),
    _cmd("team.set_membership", org=ORGS, team_slug=SLUGS, user=LOGINS),
    _cmd("team.remove_member", org=ORGS, team_slug=SLUGS, user=LOGINS),
    _cmd("team.set_repo_permission", org=ORGS, team_slug=SLUGS, owner=OWNERS, repo=REPOS, permission=PERMS),
    _cmd("repo.create", owner=OWNERS, name=REPOS, private=BOOLS),
    _cmd("repo.update", owner=OWNERS, repo=REPOS, name=REPOS, private=BOOLS),
    _cmd("repo.update", owner=OWNERS, repo=REPOS, archived=BOOLS),
    _cmd("repo.delete", owner=OWNERS, repo=REPOS),
    _cmd("collaborator.set", owner=OWNERS, repo=REPOS, user=LOGINS, permission=PERMS),
    _cmd("collaborator.remove", owner=OWNERS, repo=REPOS, user=LOGINS),
    _cmd("repo.unknown_kind"),
)
MODES = st.sampled_from(
    ("node",) * 6 + ("user", "user", "node1", "badsig", "wrongchain", "replay", "garbage")
)
OPS = st.tuples(st.sampled_from(ACTORS), MODES, COMMANDS)
BLOCKS = st.lists(st.lists(OPS, max_size=6), min_size=1, max_size=5)


def _build(blocks: list[list[tuple[str, str, tuple[str, dict[str, Any]]]]]) -> list[list[bytes]]:
    """Turn generated ops into transaction bytes (deterministic: nonces come from a counter)."""
    chain = Chain()
    for user in USERS:
        chain.tokens[user] = f"tok-{user}"
    setup: list[bytes] = []
    for user in USERS:
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
    for user in ("alice", "bob"):
        setup.append(
            chain.node_tx(user, "user.add_key", {"login": user, "public_key": user_public_key(user)})
        )
    for actor, kind, payload in (
        (ADMIN, "org.create", {"login": "acme", "admin": "alice"}),
        ("alice", "org.set_membership", {"org": "acme", "user": "bob", "role": "member"}),
        ("alice", "org.set_membership", {"org": "acme", "user": "carol", "role": "member"}),
        ("alice", "team.create", {"org": "acme", "name": "Core"}),
        ("alice", "team.set_membership", {"org": "acme", "team_slug": "core", "user": "bob"}),
        ("alice", "repo.create", {"owner": "alice", "name": "r1", "private": True}),
        ("alice", "repo.create", {"owner": "acme", "name": "r1"}),
        ("bob", "repo.create", {"owner": "acme", "name": "r2", "private": True}),
        (
            "alice",
            "collaborator.set",
            {"owner": "alice", "repo": "r1", "user": "carol", "permission": "write"},
        ),
    ):
        setup.append(chain.node_tx(actor, kind, payload))
    out = [setup]
    built: list[bytes] = []
    for block in blocks:
        txs: list[bytes] = []
        for actor, mode, (kind, payload) in block:
            if mode == "garbage":
                tx = b'{"kind":"x"}'
            elif mode == "replay" and built:
                tx = built[-1]
            elif mode == "user":
                tx = chain.user_tx(actor, kind, payload)
            elif mode == "badsig":
                tx = chain.node_tx(actor, kind, payload, node=2, seed=b"\x07" * 32)
            elif mode == "wrongchain":
                tx = chain.node_tx(actor, kind, payload, chain_id="elsewhere")
            else:
                tx = chain.node_tx(actor, kind, payload, node=1 if mode == "node1" else 0)
            built.append(tx)
            txs.append(tx)
        out.append(txs)
    return out


def _ctx_for(height: int) -> Any:
    from commands.ledger import BlockContext

    return BlockContext(CHAIN_ID, height, GENESIS_MS + 1000 * height, VALIDATORS)


def _fingerprint(results: list[BlockResult]) -> list[tuple[bytes, list[bytes], list[bytes]]]:
    return [
        (
            r.app_hash,
            [canonical_json(rec.to_json()) for rec in r.receipts],
            [canonical_json(e.model_dump()) for e in r.events],
        )
        for r in results
    ]


def _run_chained(blocks: list[list[bytes]]) -> tuple[list[BlockResult], Any]:
    """Never merge: each block runs on the previous block's fork."""
    state = genesis().state
    results = []
    for txs in blocks:
        r = execute_block(state, state.app_hash, _ctx_for(state.height + 1), txs)
        results.append(r)
        state = r.state
    return results, state


def _run_merging(blocks: list[list[bytes]]) -> tuple[list[BlockResult], Any]:
    """Like a node that only executes finalized blocks: fork, execute, merge into the base."""
    base = genesis().state
    results = []
    for txs in blocks:
        r = execute_block(base, base.app_hash, _ctx_for(base.height + 1), txs)
        r.state.merge_into_parent()
        results.append(r)
    assert base.depth == 1
    return results, base


def _run_speculating(blocks: list[list[bytes]]) -> tuple[list[BlockResult], Any]:
    """Execute block i+1 on block i's fork before block i is merged; a competing block is discarded."""
    base = genesis().state
    results: list[BlockResult] = []
    pending: BlockResult | None = None
    for txs in blocks:
        parent = base if pending is None else pending.state
        competitor = execute_block(parent, parent.app_hash, _ctx_for(parent.height + 1), list(reversed(txs)))
        current = execute_block(parent, parent.app_hash, _ctx_for(parent.height + 1), txs)
        del competitor  # a losing sibling: never merged
        if pending is not None:
            pending.state.merge_into_parent()
            results.append(pending)
        pending = current
    assert pending is not None
    pending.state.merge_into_parent()
    results.append(pending)
    assert base.depth == 1
    return results, base


def _run_folding(results: list[BlockResult]) -> Any:
    """Rebuild from the stored outcome only (what a restarting node reads from its stores)."""
    state = genesis().state
    for r in results:
        fork = state.fork()
        fold_block(fork, r.height, r.app_hash, [rec.tx_id for rec in r.receipts], r.events)
        fork.merge_into_parent()
    return state


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BLOCKS)
def test_replay_is_deterministic_across_runs_and_fork_strategies(blocks: Any) -> None:
    txs = _build(blocks)
    first, first_state = _run_chained(txs)
    second, second_state = _run_chained(txs)
    merged, merged_state = _run_merging(txs)
    speculated, speculated_state = _run_speculating(txs)
    reference = _fingerprint(first)
    assert _fingerprint(second) == reference
    assert _fingerprint(merged) == reference
    assert _fingerprint(speculated) == reference
    snapshot = first_state.snapshot()
    assert second_state.snapshot() == snapshot
    assert merged_state.snapshot() == snapshot
    assert speculated_state.snapshot() == snapshot
    assert _run_folding(first).snapshot() == snapshot
    for result, block in zip(first, txs, strict=True):
        assert len(result.receipts) == len(block)
        assert [rec.index for rec in result.receipts] == list(range(len(block)))
        assert sum(rec.events for rec in result.receipts) == len(result.events)


def test_setup_block_succeeds_and_a_discarded_fork_leaves_the_base_alone() -> None:
    txs = _build([[("alice", "node", ("repo.create", {"owner": "alice", "name": "r3"}))]])
    results, state = _run_merging(txs)
    assert all(r.ok for r in results[0].receipts)
    assert results[1].receipts[0].ok
    before = state.snapshot()
    spec = execute_block(state, state.app_hash, _ctx_for(state.height + 1), txs[1])
    assert spec.receipts[0].code == 409  # already applied on the base
    assert state.snapshot() == before
