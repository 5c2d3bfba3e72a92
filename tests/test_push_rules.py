"""git.push_refs under protocol version 2: the ledger decides what git can store, per ref.

Each hostile push that once halted every validator (a 251-byte component, a ref beside
another below it, both in one push, or the other way round) is refused per ref with git's
own words, and the refs a push may write are checked against real git: `git
check-ref-format` for names, and `git update-ref` on a real repository for conflicts.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.refs import FUNNY_REFNAME, HIDDEN_REF, SEGMENT_MAX_BYTES, RefNamespace, ref_format_error
from domain.rules import LATEST, LEGACY, ChainRules, Rules
from tests.test_refs_handlers import A, B, C, D, GitChain, Z, pack, refs_of, up


@pytest.fixture
def chain() -> GitChain:
    c = GitChain(LATEST)
    for login in ("alice", "bob", "dave"):
        c.add_user(login)
    c.ok("alice", "repo.create", owner="alice", name="r")
    c.ok("alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="write")
    rid = c.repo_id()
    assert c.git is not None
    c.git.add_commit(rid, A)
    c.git.add_commit(rid, B, [A])
    c.git.add_commit(rid, D, [A])
    c.git.add_commit(rid, C, [B], pack=pack("p1"))
    return c


def push(chain: GitChain, *updates: dict[str, Any], atomic: bool = False, pack_digest: str = "") -> Any:
    payload: dict[str, Any] = {
        "owner": "alice",
        "repo": "r",
        "pack_digest": pack_digest,
        "updates": list(updates),
    }
    if atomic:
        payload["atomic"] = True
    return chain.do("alice", "git.push_refs", **payload)


# -- the four pushes that halted every validator -----------------------------------------


def test_a_component_too_long_for_a_file_name_is_refused_per_ref(chain: GitChain) -> None:
    long = "a" * (SEGMENT_MAX_BYTES + 1)
    r = push(chain, up("main", Z, A), up(long, Z, A))
    assert r.ok and r.events == 1  # main went in; the long one did not
    assert refs_of(r)[0] == ("refs/heads/main", True, "")
    ref, ok, reason = refs_of(r)[1]
    assert not ok and reason == (
        f"cannot lock ref 'refs/heads/{long}': a component is {SEGMENT_MAX_BYTES + 1} bytes; "
        f"the limit is {SEGMENT_MAX_BYTES}"
    )
    assert chain.refs() == {"refs/heads/main": A}
    assert push(chain, up("a" * SEGMENT_MAX_BYTES, Z, A)).ok  # at the limit: fine


def test_b_a_ref_below_an_existing_ref(chain: GitChain) -> None:
    assert push(chain, up("df", Z, A)).ok
    r = push(chain, up("df/sub", Z, A))
    assert not r.ok and r.code == 409
    assert refs_of(r) == [
        (
            "refs/heads/df/sub",
            False,
            "cannot lock ref 'refs/heads/df/sub': 'refs/heads/df' exists; cannot create 'refs/heads/df/sub'",
        )
    ]
    assert chain.refs() == {"refs/heads/df": A}


def test_c_both_in_one_push(chain: GitChain) -> None:
    r = push(chain, up("sp", Z, A), up("sp/x", Z, A))
    assert r.ok  # not atomic: the first goes in, the second cannot
    assert refs_of(r) == [
        ("refs/heads/sp", True, ""),
        (
            "refs/heads/sp/x",
            False,
            "cannot lock ref 'refs/heads/sp/x': 'refs/heads/sp' exists; cannot create 'refs/heads/sp/x'",
        ),
    ]
    assert r.message.startswith("1 of 2 refs refused: refs/heads/sp/x cannot lock ref")
    r = push(chain, up("q", Z, A), up("q/x", Z, A), atomic=True)
    assert not r.ok and r.code == 409
    assert refs_of(r) == [
        ("refs/heads/q", False, "atomic push failed"),
        (
            "refs/heads/q/x",
            False,
            "cannot lock ref 'refs/heads/q/x': cannot process 'refs/heads/q' and 'refs/heads/q/x' "
            "at the same time",
        ),
    ]
    assert chain.refs() == {"refs/heads/sp": A}


def test_d_a_ref_above_an_existing_ref(chain: GitChain) -> None:
    assert push(chain, up("rd/x", Z, A)).ok
    r = push(chain, up("rd", Z, A))
    assert not r.ok
    assert (
        refs_of(r)[0][2]
        == "cannot lock ref 'refs/heads/rd': 'refs/heads/rd/x' exists; cannot create 'refs/heads/rd'"
    )
    # Deleting the one below first makes room, in one push, in order.
    r = push(chain, up("rd/x", A, Z), up("rd", Z, A))
    assert r.ok and refs_of(r) == [("refs/heads/rd/x", True, ""), ("refs/heads/rd", True, "")]
    assert chain.refs() == {"refs/heads/rd": A}


def test_an_atomic_push_may_replace_a_ref_by_one_below_it(chain: GitChain) -> None:
    assert push(chain, up("rd", Z, A)).ok
    r = push(chain, up("rd/x", Z, A), up("rd", A, Z), atomic=True)
    assert r.ok, r
    assert chain.refs() == {"refs/heads/rd/x": A}


# -- per-ref outcomes ---------------------------------------------------------------------


def test_a_plain_push_applies_what_it_can(chain: GitChain) -> None:
    assert push(chain, up("main", Z, A)).ok
    chain.ok("alice", "repo.set_branch_protection", owner="alice", repo="r", branch="locked")
    assert push(chain, up("locked", Z, B)).ok
    r = chain.do(
        "alice",
        "git.push_refs",
        owner="alice",
        repo="r",
        pack_digest="",
        updates=[up("main", A, B), up("locked", B, D, force=True), up("refs/heads/a..b", Z, A)],
    )
    assert r.ok and r.code == 200 and r.events == 1
    assert refs_of(r) == [
        ("refs/heads/main", True, ""),
        ("refs/heads/locked", False, "protected branch: force push not allowed"),
        ("refs/heads/a..b", False, FUNNY_REFNAME),
    ]
    assert chain.refs() == {"refs/heads/main": B, "refs/heads/locked": B}
    event = chain.results[-1].events[0]
    assert event.data["updates"] == [{"ref": "refs/heads/main", "old": A, "new": B}]


def test_atomic_is_all_or_nothing(chain: GitChain) -> None:
    assert push(chain, up("main", Z, A)).ok
    r = push(chain, up("main", A, B), up("refs/heads/x", "1" * 40, A), atomic=True)
    assert not r.ok and r.events == 0
    assert refs_of(r) == [
        ("refs/heads/main", False, "atomic push failed"),
        ("refs/heads/x", False, "stale info"),
    ]
    assert chain.refs() == {"refs/heads/main": A}


def test_other_namespaces_and_hidden_refs(chain: GitChain) -> None:
    r = push(chain, up("refs/notes/commits", Z, B), up("refs/pull/1/head", Z, A), up("refs/stele/x", Z, A))
    assert refs_of(r) == [
        ("refs/notes/commits", True, ""),
        ("refs/pull/1/head", False, HIDDEN_REF),
        ("refs/stele/x", False, HIDDEN_REF),
    ]
    assert push(chain, up("refs/notes/commits", B, D)).ok is False  # not a fast-forward, no force
    assert push(chain, up("refs/notes/commits", B, D, force=True)).ok


def test_the_default_branch_cannot_be_deleted(chain: GitChain) -> None:
    assert push(chain, up("main", Z, A), up("dev", Z, A)).ok
    r = push(chain, up("main", A, Z))
    assert not r.ok and r.code == 403
    assert refs_of(r) == [
        ("refs/heads/main", False, "refusing to delete the current branch: refs/heads/main")
    ]
    assert push(chain, up("dev", A, Z)).ok
    chain.ok("alice", "repo.update", owner="alice", repo="r", default_branch="dev")
    assert push(chain, up("main", A, Z)).ok  # no longer the default


def test_oversized_objects_refuse_the_push(chain: GitChain) -> None:
    assert chain.git is not None
    big = "b" * 40
    chain.git.set_size(pack("p1"), big, LATEST.max_object_bytes + 1)
    chain.git.set_size(pack("p1"), "c" * 40, LATEST.max_object_bytes)  # at the limit: fine
    r = push(chain, up("main", Z, C), pack_digest=pack("p1"))
    assert not r.ok and r.code == 413
    reason = f"object {big} is 100.00 MiB; this exceeds the maximum object size of 100 MiB"
    assert r.message == f"push rejected: {reason}"
    assert refs_of(r) == [("refs/heads/main", False, reason)]


def test_version_1_keeps_its_all_or_nothing_rules() -> None:
    c = GitChain(LEGACY)
    c.add_user("alice")
    c.ok("alice", "repo.create", owner="alice", name="r")
    assert c.git is not None
    c.git.add_commit(c.repo_id(), A)
    # Version 1 accepted what git cannot store (kept so old blocks replay the same) ...
    assert push(c, up("df", Z, A)).ok and push(c, up("df/sub", Z, A)).ok
    # ... and refused a bad name for the whole payload.
    r = push(c, up("main", Z, A), up("refs/heads/a..b", Z, A))
    assert not r.ok and r.code == 422 and "refs/heads/a..b" in r.message


def test_protocol_upgrades_take_effect_at_their_height() -> None:
    rules = ChainRules.from_genesis({"protocol": {"upgrades": [{"version": 2, "height": 10}]}})
    assert rules.at(9) == LEGACY and rules.at(10) == LATEST
    assert ChainRules.from_genesis({}).at(1_000_000) == LEGACY
    assert ChainRules.latest().at(0) == LATEST
    assert ChainRules.from_genesis({"protocol": ChainRules.latest().to_json()}) == ChainRules.latest()
    bad: dict[str, Any]
    for bad in (
        {"protocol": []},
        {"protocol": {"upgrades": [{"version": 99, "height": 0}]}},
        {"protocol": {"upgrades": [{"version": 2, "height": -1}]}},
        {"protocol": {"max_object_bytes": 1}},
        {"protocol": {"surprise": 1}},
    ):
        with pytest.raises(ValueError):
            ChainRules.from_genesis(bad)
    assert Rules(2, 5).per_ref_pushes and not LEGACY.per_ref_pushes


# -- the rule against real git --------------------------------------------------------------

_PIECES = ["a", "b", "x.y", "-", "_", "é", ".", "..", "a.lock", "@", "@{", "~", "^", ":", "?", "*", "[", "\\"]
_PIECES += [" ", "\t", "", "lock", ".a", "a."]
NAMES = st.lists(st.sampled_from(_PIECES), min_size=1, max_size=4).map(lambda parts: "/".join(parts))


def _git_accepts(name: str) -> bool:
    done = subprocess.run(["git", "check-ref-format", name], capture_output=True)
    return done.returncode == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES, st.sampled_from(["refs/heads/", "refs/tags/", "refs/notes/", "refs/x/"]))
def test_names_are_refused_exactly_when_git_refuses_them(name: str, prefix: str) -> None:
    ref = prefix + name
    ours = ref_format_error(ref)
    assert (ours is None) == _git_accepts(ref), (ref, ours)


def test_names_git_has_no_file_for() -> None:
    assert ref_format_error("refs/heads") == FUNNY_REFNAME  # a namespace is a directory
    assert ref_format_error("HEAD") == FUNNY_REFNAME
    assert ref_format_error("refs/heads/\ud800") == FUNNY_REFNAME  # a lone surrogate
    assert "the limit is 1024" in (ref_format_error("refs/heads/" + "/".join(["b" * 200] * 6)) or "")


REF_SETS = st.lists(
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map(
        lambda p: "refs/heads/" + "/".join(p)
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REF_SETS)
def test_conflicts_are_decided_as_git_decides_them(
    tmp_path_factory: pytest.TempPathFactory, refs: list[str]
) -> None:
    """Create refs one by one with the ledger's rule and with `git update-ref` in a real repository."""
    repo = tmp_path_factory.mktemp("repo")
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"], input=b"x", cwd=repo, capture_output=True, check=True
    ).stdout.strip()
    names = RefNamespace(())
    for branch in refs:
        ref = branch.replace("refs/heads/", "refs/x/")  # git writes non-commits only outside refs/heads
        ours_ok = ref in names or names.conflict(ref) is None
        if ref not in names and ours_ok:
            names.add(ref)
        theirs = subprocess.run(["git", "update-ref", ref, blob], cwd=repo, capture_output=True)
        assert ours_ok == (theirs.returncode == 0), (ref, theirs.stderr)
        if not ours_ok:
            assert names.conflict(ref) is not None
            assert b"exists; cannot create" in theirs.stderr
    listed = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"], cwd=repo, capture_output=True, check=True
    ).stdout.decode()
    assert sorted(listed.split()) == list(names)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(REF_SETS, st.booleans()), min_size=1, max_size=5))
def test_whatever_is_pushed_the_refs_can_be_written_as_files(pushes: list[tuple[list[str], bool]]) -> None:
    """After any pushes the ledger's refs are prefix-free, so every node can write them as git does."""
    c = GitChain(LATEST)
    c.add_user("alice")
    c.ok("alice", "repo.create", owner="alice", name="r")
    assert c.git is not None
    c.git.add_commit(c.repo_id(), A)
    for refs, atomic in pushes:
        current = c.refs()
        updates = [up(r, current.get(r, Z), Z if r in current else A) for r in dict.fromkeys(refs)]
        push(c, *updates, atomic=atomic)
    final = sorted(c.refs())
    for i, ref in enumerate(final):
        assert not any(other.startswith(ref + "/") for other in final[i + 1 :]), final


def test_write_refs_of_a_legacy_history(tmp_path: Path) -> None:
    """What version 1 accepted (a ref beside one below it, a 251-byte component) is still stored."""
    from adapters.git.store import GitStore

    store = GitStore(tmp_path / "git")
    refs = {"refs/heads/df": A, "refs/heads/df/sub": A, "refs/heads/" + "a" * 251: A}
    store.write_refs("r", refs)
    assert store.refs("r") == refs
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(refname)"],
        cwd=store.repo_path("r"),
        capture_output=True,
        check=True,
    )
    assert sorted(out.stdout.decode().split()) == sorted(refs)
