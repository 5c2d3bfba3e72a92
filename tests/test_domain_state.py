"""LedgerState storage: copy-on-write forks, merging a finalized fork, and frozen query results."""

from __future__ import annotations

import dataclasses

import pytest

from domain import events as ev
from domain.evolve import apply_event, finish_block, fold_block, start_chain
from domain.overlay import RetiredStateError
from domain.state import LedgerState


def _user(user_id: str, login: str) -> ev.UserCreated:
    return ev.UserCreated(user_id=user_id, login=login, email=f"{login}@x.io", site_admin=False)


def _repo(
    repo_id: str, owner_id: str = "u1", owner_login: str = "Alice", name: str = "Repo"
) -> ev.RepoCreated:
    return ev.RepoCreated(
        repo_id=repo_id,
        owner_id=owner_id,
        owner_type="User",
        owner_login=owner_login,
        name=name,
        description="",
        private=False,
        default_branch="main",
    )


def _base() -> LedgerState:
    s = LedgerState()
    start_chain(s, "c")
    for e in (_user("u1", "Alice"), _user("u2", "bob"), _repo("r1")):
        apply_event(s, e)
    apply_event(s, ev.CollaboratorSet(repo_id="r1", user_id="u2", permission="write"))
    return s


def test_lookups_are_case_insensitive_and_keep_the_stored_spelling() -> None:
    s = _base()
    assert s.user_by_login("ALICE") == s.user("u1")
    assert s.user_by_login("alice").login == "Alice"  # type: ignore[union-attr]
    assert s.repo_by_name("alice", "REPO").name == "Repo"  # type: ignore[union-attr]
    assert s.login_taken("BOB") and not s.login_taken("carol")


def test_query_results_are_frozen() -> None:
    s = _base()
    user = s.user("u1")
    assert user is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.login = "mallory"  # type: ignore[misc]
    assert isinstance(s.collaborators("r1"), tuple)


def test_fork_writes_do_not_touch_the_parent() -> None:
    base = _base()
    before = base.snapshot()
    fork = base.fork()
    apply_event(fork, _user("u3", "carol"))
    apply_event(fork, ev.CollaboratorSet(repo_id="r1", user_id="u3", permission="read"))
    apply_event(fork, ev.RepoDeleted(repo_id="r1"))
    assert fork.repo("r1") is None and fork.collaborators("r1") == ()
    assert fork.user_by_login("carol") is not None
    assert base.snapshot() == before
    assert base.repo("r1") is not None and base.collaborators("r1") == (("u2", "write"),)


def test_merge_into_parent_applies_writes_including_deletions() -> None:
    base = _base()
    fork = base.fork()
    apply_event(fork, ev.RepoDeleted(repo_id="r1"))
    apply_event(fork, _repo("r2", name="other"))
    expected = fork.snapshot()
    assert fork.merge_into_parent() is base
    assert base.snapshot() == expected
    assert base.repo("r1") is None and base.repo_by_name("alice", "other") is not None
    assert base.depth == 1


def test_a_merged_fork_is_retired_and_its_children_merge_into_the_base() -> None:
    base = _base()
    first = base.fork()
    apply_event(first, _user("u3", "carol"))
    second = first.fork()  # speculative execution of the next block
    apply_event(second, ev.CollaboratorSet(repo_id="r1", user_id="u3", permission="admin"))
    first.merge_into_parent()
    with pytest.raises(RetiredStateError):
        apply_event(first, _user("u4", "dave"))
    with pytest.raises(RetiredStateError):
        first.merge_into_parent()
    assert first.snapshot() == base.snapshot()  # a retired state reads as its parent
    assert second.collaborators("r1") == (("u2", "write"), ("u3", "admin"))
    expected = second.snapshot()
    assert second.merge_into_parent() is base
    assert base.snapshot() == expected
    assert first.fork().depth == 2  # forks of a retired state hang directly off the base


def test_nested_forks_keep_tombstones_until_they_reach_the_base() -> None:
    base = _base()
    mid = base.fork()
    leaf = mid.fork()
    apply_event(leaf, ev.CollaboratorRemoved(repo_id="r1", user_id="u2"))
    apply_event(leaf, ev.RepoDeleted(repo_id="r1"))
    leaf.merge_into_parent()
    assert mid.repo("r1") is None and base.repo("r1") is not None
    mid.merge_into_parent()
    assert base.repo("r1") is None and base.repo_by_name("alice", "repo") is None


def test_a_base_state_cannot_merge() -> None:
    with pytest.raises(ValueError):
        _base().merge_into_parent()


def test_versions_and_applied_ids_and_fold_block() -> None:
    base = _base()
    assert base.version("r1") == 0 and not base.is_applied("ab" * 32) and not base.is_applied("zz")
    fork = base.fork()
    recorded = ev.RecordedEvent(
        aggregate_id="r9",
        version=1,
        type="RepoCreated",
        data=_repo("r9", name="nine").model_dump(),
        height=1,
        tx_id="ab" * 32,
        tx_index=0,
        event_index=0,
        timestamp_ms=5,
        actor="u1",
    )
    fold_block(fork, 1, b"\x01" * 32, ["ab" * 32, "cd" * 32], [recorded])
    assert fork.version("r9") == 1 and fork.is_applied("ab" * 32) and fork.is_applied("CD" * 32)
    assert fork.height == 1 and fork.app_hash == b"\x01" * 32 and base.height == -1
    assert fork.repo_by_name("Alice", "NINE") is not None


def test_rename_moves_the_name_index() -> None:
    s = _base()
    apply_event(s, ev.RepoUpdated(repo_id="r1", changes={"name": "Renamed", "archived": True}))
    assert s.repo_by_name("alice", "repo") is None
    repo = s.repo_by_name("alice", "renamed")
    assert repo is not None and repo.archived and repo.full_name == "Alice/Renamed"


def test_unknown_event_type_is_refused_loudly() -> None:
    class Strange(ev.Event):
        aggregate = "x"
        x: str

    with pytest.raises(ValueError, match="no fold"):
        apply_event(_base(), Strange(x="1"))


def test_a_repository_name_is_resolved_to_its_holder_at_a_height() -> None:
    """Names are reused: a fact recorded under owner/name belongs to whoever held the name then."""
    s = LedgerState()
    start_chain(s, "c")
    finish_block(s, 0, b"")

    def block(height: int, *events: ev.Event) -> None:
        for empty in range(s.height + 1, height):
            finish_block(s, empty, b"")
        for e in events:
            apply_event(s, e)
        finish_block(s, height, b"")

    block(1, _user("u1", "Alice"), _repo("r1"))
    block(3, ev.RepoDeleted(repo_id="r1"))
    block(5, _repo("r2"))
    block(7, ev.RepoUpdated(repo_id="r2", changes={"name": "Moved"}))
    assert s.repo_named_at("alice", "repo", 1) is None  # it changed hands within block 1
    assert s.repo_named_at("ALICE", "REPO", 2) == "r1"
    assert s.repo_named_at("alice", "repo", 4) is None  # freed by the deletion
    assert s.repo_named_at("alice", "repo", 6) == "r2"  # a new repository under the old name
    assert s.repo_named_at("alice", "repo", 8) is None  # renamed away
    assert s.repo_named_at("alice", "moved", 8) == "r2"
    assert s.repo_named_at("alice", "moved", 6) is None
    assert s.repo_named_at("alice", "other", 8) is None
