"""The refs and branch_protection read models, fed by the events of real ledger blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.events import RecordedEvent
from projections import Projector, ReadModels
from projections.schema import SCHEMA_VERSION
from tests.test_refs_handlers import A, B, C, D, GitChain, Z, pack, up


@pytest.fixture
def chain() -> GitChain:
    c = GitChain()
    for login in ("alice", "bob", "carol"):
        c.add_user(login)
    c.ok("alice", "repo.create", owner="alice", name="r")
    c.ok("alice", "repo.create", owner="alice", name="other")
    c.ok("alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="write")
    assert c.git is not None
    for name in ("r", "other"):
        rid = c.repo_id("alice", name)
        c.git.add_commit(rid, A)
        c.git.add_commit(rid, B, [A])
        c.git.add_commit(rid, D, [A])
        c.git.add_commit(rid, C, [B], pack=pack("p1"))
    return c


@pytest.fixture
def projector(tmp_path: Path) -> Iterator[Projector]:
    p = Projector(tmp_path / "readmodels.duckdb")
    yield p
    p.close()


def sync(chain: GitChain, projector: Projector) -> None:
    """Apply every block the chain made that the projector has not seen, one transaction each."""
    for result in chain.results:
        projector.apply_block(result.height, list(result.events))


def all_events(chain: GitChain) -> list[RecordedEvent]:
    return [e for result in chain.results for e in result.events]


def ledger_refs(chain: GitChain, name: str = "r") -> list[dict[str, Any]]:
    rid = chain.repo_id("alice", name)
    return [{"repo_id": rid, "ref": ref, "sha": sha} for ref, sha in chain.state.refs(rid)]


def ledger_protections(chain: GitChain, name: str = "r") -> list[dict[str, Any]]:
    rid = chain.repo_id("alice", name)
    return [
        {
            "repo_id": p.repo_id,
            "branch": p.branch,
            "allow_force_pushes": p.allow_force_pushes,
            "allow_deletions": p.allow_deletions,
            "required_approving_review_count": p.required_approving_review_count,
            "restrict_pushers": list(p.restrict_pushers),
        }
        for p in chain.state.branch_protections(rid)
    ]


def test_refs_follow_pushes(chain: GitChain, projector: Projector) -> None:
    models = ReadModels(projector)
    rid = chain.repo_id()
    chain.push("alice", up("main", Z, A), up("dev", Z, D), up("refs/tags/v1", Z, A))
    sync(chain, projector)
    assert models.refs(rid) == ledger_refs(chain)
    assert [r["ref"] for r in models.refs(rid)] == ["refs/heads/dev", "refs/heads/main", "refs/tags/v1"]
    assert [r["ref"] for r in models.refs(rid, prefix="refs/heads/")] == ["refs/heads/dev", "refs/heads/main"]
    assert models.refs(rid, prefix="refs/tags/") == [{"repo_id": rid, "ref": "refs/tags/v1", "sha": A}]
    assert models.ref(rid, "refs/heads/main") == {"repo_id": rid, "ref": "refs/heads/main", "sha": A}
    chain.push("bob", up("main", A, B), up("dev", D, Z))
    chain.push("bob", up("main", B, C), pack_digest=pack("p1"))
    sync(chain, projector)
    assert models.ref(rid, "refs/heads/dev") is None
    assert models.ref(rid, "refs/heads/main") == {"repo_id": rid, "ref": "refs/heads/main", "sha": C}
    assert models.refs(rid) == ledger_refs(chain)
    assert models.refs(chain.repo_id("alice", "other")) == []


def test_a_refused_push_changes_no_rows(chain: GitChain, projector: Projector) -> None:
    models = ReadModels(projector)
    chain.push("alice", up("main", Z, A))
    assert not chain.push("alice", up("main", A, B), up("dev", A, B)).ok  # dev is stale
    sync(chain, projector)
    assert (
        models.refs(chain.repo_id())
        == ledger_refs(chain)
        == [{"repo_id": chain.repo_id(), "ref": "refs/heads/main", "sha": A}]
    )


def test_several_changes_to_a_ref_in_one_block_leave_its_final_value(
    chain: GitChain, projector: Projector
) -> None:
    sync(chain, projector)
    payload = {"owner": "alice", "repo": "r"}
    result = chain.block(
        chain.node_tx("alice", "git.push_refs", {**payload, "updates": [up("main", Z, A), up("gone", Z, A)]}),
        chain.node_tx("alice", "git.push_refs", {**payload, "updates": [up("main", A, B), up("gone", A, Z)]}),
        chain.node_tx("alice", "git.push_refs", {**payload, "updates": [up("gone", Z, D)]}),
        chain.node_tx("alice", "git.push_refs", {**payload, "updates": [up("gone", D, Z)]}),
    )
    assert all(r.ok for r in result.receipts)
    projector.apply_block(result.height, list(result.events))
    assert ReadModels(projector).refs(chain.repo_id()) == ledger_refs(chain)
    assert [r["ref"] for r in ReadModels(projector).refs(chain.repo_id())] == ["refs/heads/main"]


def test_branch_protection_rows(chain: GitChain, projector: Projector) -> None:
    models = ReadModels(projector)
    rid = chain.repo_id()
    base = {"owner": "alice", "repo": "r"}
    chain.ok(
        "alice",
        "repo.set_branch_protection",
        **base,
        branch="main",
        required_approving_review_count=2,
        restrict_pushers=["carol", "bob"],
    )
    chain.ok("alice", "repo.set_branch_protection", **base, branch="release/1.x", allow_deletions=True)
    sync(chain, projector)
    bob, carol = chain.state.user_by_login("bob"), chain.state.user_by_login("carol")
    assert bob and carol
    assert models.branch_protection(rid, "main") == {
        "repo_id": rid,
        "branch": "main",
        "allow_force_pushes": False,
        "allow_deletions": False,
        "required_approving_review_count": 2,
        "restrict_pushers": sorted((bob.user_id, carol.user_id)),
    }
    assert models.branch_protections(rid) == ledger_protections(chain)
    assert models.branch_protection(rid, "nope") is None
    chain.ok("alice", "repo.set_branch_protection", **base, branch="main", allow_force_pushes=True)
    chain.ok("alice", "repo.remove_branch_protection", **base, branch="release/1.x")
    sync(chain, projector)
    row = models.branch_protection(rid, "main")
    assert row is not None and row["allow_force_pushes"] and row["restrict_pushers"] == []
    assert models.branch_protection(rid, "release/1.x") is None
    assert models.branch_protections(rid) == ledger_protections(chain)


def test_deleting_a_repository_drops_its_rows_only(chain: GitChain, projector: Projector) -> None:
    models = ReadModels(projector)
    rid, other = chain.repo_id(), chain.repo_id("alice", "other")
    chain.push("alice", up("main", Z, A))
    chain.push("alice", up("main", Z, A), repo="other")
    for name in ("r", "other"):
        chain.ok("alice", "repo.set_branch_protection", owner="alice", repo=name, branch="main")
    sync(chain, projector)
    chain.ok("alice", "repo.delete", owner="alice", repo="r")
    sync(chain, projector)
    assert models.refs(rid) == [] and models.branch_protections(rid) == []
    assert models.refs(other) == ledger_refs(chain, "other") != []
    assert models.branch_protections(other) == ledger_protections(chain, "other") != []


def test_rebuild_and_batched_catch_up_match_block_by_block(chain: GitChain, tmp_path: Path) -> None:
    chain.push("alice", up("main", Z, A), up("refs/tags/v1", Z, A))
    chain.ok(
        "alice",
        "repo.set_branch_protection",
        owner="alice",
        repo="r",
        branch="main",
        restrict_pushers=["bob"],
    )
    chain.push("bob", up("main", A, B), up("refs/tags/v1", A, Z, force=True))
    chain.push("alice", up("main", Z, D), repo="other")
    chain.ok("alice", "repo.delete", owner="alice", repo="other")

    def dump(p: Projector) -> dict[str, list[tuple[Any, ...]]]:
        with p.cursor() as cur:
            return {
                t: cur.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("refs", "branch_protection")
            }

    one = Projector(tmp_path / "one.duckdb")
    batched = Projector(tmp_path / "batched.duckdb")
    rebuilt = Projector(tmp_path / "rebuilt.duckdb")
    try:
        sync(chain, one)
        batched.apply_blocks((r.height, list(r.events)) for r in chain.results)
        rebuilt.rebuild(all_events(chain), up_to=chain.state.height)
        assert dump(one) == dump(batched) == dump(rebuilt)
        assert dump(one)["refs"] == [(chain.repo_id(), "refs/heads/main", B)]
        assert rebuilt.height() == one.height() == chain.state.height
    finally:
        for p in (one, batched, rebuilt):
            p.close()


def test_schema_version_covers_the_new_tables(projector: Projector) -> None:
    assert SCHEMA_VERSION >= 2
    with projector.cursor() as cur:
        tables = {r[0] for r in cur.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert {"refs", "branch_protection"} <= tables
