"""git.push_refs and branch protection under protocol version 1 (all or nothing), executed through
real blocks with an in-memory GitView. Version 1 must keep deciding exactly as it did, so that
chains started before version 2 replay to the same receipts; version 2 is in test_push_rules.py."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from commands.git_view import GitViewError, MemoryGitView
from commands.ledger import BlockContext, Receipt, execute_block, precheck_transaction
from domain.events import ZERO_SHA
from domain.records import BranchProtection
from domain.rules import LEGACY, Rules
from domain.state import LedgerState
from tests.test_ledger_support import ADMIN, CHAIN_ID, GENESIS_MS, VALIDATORS, Chain, user_public_key

Z = ZERO_SHA


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def pack(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


A, B, C, D, X = sha("a"), sha("b"), sha("c"), sha("d"), sha("x")  # A <- B <- C, A <- D; X unknown


class GitChain(Chain):
    """The ledger test chain with a MemoryGitView wired into every block."""

    def __init__(self, rules: Rules = LEGACY) -> None:
        super().__init__()
        self.git: MemoryGitView | None = MemoryGitView()
        self.rules = rules

    def ctx(self, height: int | None = None) -> BlockContext:
        h = self.state.height + 1 if height is None else height
        return BlockContext(CHAIN_ID, h, GENESIS_MS + 1000 * h, VALIDATORS, self.git, self.rules)

    def repo_id(self, owner: str = "alice", name: str = "r") -> str:
        repo = self.state.repo_by_name(owner, name)
        assert repo is not None
        return repo.repo_id

    def push(self, actor: str, *updates: dict[str, Any], pack_digest: str = "", repo: str = "r") -> Receipt:
        return self.do(
            actor, "git.push_refs", owner="alice", repo=repo, pack_digest=pack_digest, updates=list(updates)
        )

    def refs(self, name: str = "r") -> dict[str, str]:
        return dict(self.state.refs(self.repo_id("alice", name)))


def up(ref: str, old: str, new: str, *, force: bool = False) -> dict[str, Any]:
    short = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    return {"ref": short, "old": old, "new": new, "force": force}


def refs_of(receipt: Receipt) -> list[tuple[str, bool, str]]:
    return [(r["ref"], r["ok"], r["reason"]) for r in receipt.result["refs"]]


def _rejected(receipt: Receipt, code: int, fragment: str = "") -> None:
    assert not receipt.ok and receipt.code == code, receipt
    assert fragment.lower() in receipt.message.lower(), receipt
    assert receipt.events == 0


@pytest.fixture
def chain() -> GitChain:
    c = GitChain()
    for login in ("alice", "bob", "carol", "dave"):
        c.add_user(login)
    c.ok("alice", "repo.create", owner="alice", name="r")
    c.ok("alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="write")
    c.ok("alice", "collaborator.set", owner="alice", repo="r", user="dave", permission="read")
    rid = c.repo_id()
    assert c.git is not None
    c.git.add_commit(rid, A)
    c.git.add_commit(rid, B, [A])
    c.git.add_commit(rid, D, [A])
    c.git.add_commit(rid, C, [B], pack=pack("p1"))  # only visible through pack p1
    c.git.add_object(rid, sha("annotated"), pack=pack("p1"))
    return c


# -- accepted pushes --------------------------------------------------------------------


def test_create_update_and_delete_branches(chain: GitChain) -> None:
    r = chain.push("alice", up("main", Z, A), up("dev", Z, D))
    assert r.ok and r.code == 200 and r.events == 1
    assert refs_of(r) == [("refs/heads/main", True, ""), ("refs/heads/dev", True, "")]
    event = chain.results[-1].events[0]
    assert event.type == "RefsUpdated"
    alice = chain.state.user_by_login("alice")
    assert alice is not None
    assert event.data == {
        "repo_id": chain.repo_id(),
        "pusher_id": alice.user_id,
        "pack_digest": "",
        "updates": [
            {"ref": "refs/heads/main", "old": Z, "new": A},
            {"ref": "refs/heads/dev", "old": Z, "new": D},
        ],
    }
    assert chain.state.refs(chain.repo_id()) == (("refs/heads/dev", D), ("refs/heads/main", A))
    assert chain.state.ref(chain.repo_id(), "refs/heads/main") == A
    assert chain.push("bob", up("main", A, B)).ok  # fast-forward by a writer
    assert chain.push("bob", up("main", B, C), pack_digest=pack("p1")).ok  # new commit from the pack
    assert chain.push("alice", up("dev", D, Z)).ok  # delete
    assert chain.refs() == {"refs/heads/main": C}
    assert chain.state.ref(chain.repo_id(), "refs/heads/dev") is None


def test_tags_may_point_at_annotated_tag_objects_and_move_only_with_force(chain: GitChain) -> None:
    assert chain.push("alice", up("refs/tags/v1", Z, sha("annotated")), pack_digest=pack("p1")).ok
    r = chain.push("alice", up("refs/tags/v1", sha("annotated"), A))
    _rejected(r, 409, "refs/tags/v1 already exists")
    assert refs_of(r) == [("refs/tags/v1", False, "already exists")]
    assert chain.push("alice", up("refs/tags/v1", sha("annotated"), A, force=True)).ok
    assert chain.push("bob", up("refs/tags/v1", A, Z)).ok
    assert chain.refs() == {}
    # The tag object came in p1, accepted above: it stays part of the repository.
    assert chain.push("alice", up("refs/tags/v2", Z, sha("annotated"))).ok
    _rejected(chain.push("alice", up("refs/tags/v3", Z, sha("never-pushed"))), 422, "missing objects")


def test_forced_non_fast_forward_is_accepted_without_protection(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, B))
    r = chain.push("bob", up("main", B, D))
    _rejected(r, 409, "refs/heads/main non-fast-forward")
    assert refs_of(r) == [("refs/heads/main", False, "non-fast-forward")]
    assert chain.push("bob", up("main", B, D, force=True)).ok
    assert chain.refs() == {"refs/heads/main": D}
    assert chain.push("bob", up("main", D, A, force=True)).ok  # a rewind is non-ff too


# -- compare-and-swap, objects, all or nothing -------------------------------------------


def test_compare_and_swap(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, A))
    _rejected(chain.push("alice", up("main", Z, B)), 409, "stale info")  # must not exist yet
    _rejected(chain.push("alice", up("main", D, B)), 409, "stale info")  # wrong old value
    _rejected(chain.push("alice", up("dev", A, B)), 409, "stale info")  # does not exist
    _rejected(chain.push("alice", up("dev", A, Z)), 409, "stale info")  # deleting a missing ref
    assert chain.refs() == {"refs/heads/main": A}


def test_two_pushes_from_the_same_old_value_in_one_block_only_the_first_wins(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, A))
    first = chain.node_tx(
        "alice", "git.push_refs", {"owner": "alice", "repo": "r", "updates": [up("main", A, B)]}
    )
    second = chain.node_tx(
        "bob", "git.push_refs", {"owner": "alice", "repo": "r", "updates": [up("main", A, D)]}
    )
    result = chain.block(first, second)
    assert result.receipts[0].ok
    _rejected(result.receipts[1], 409, "stale info")
    assert chain.refs() == {"refs/heads/main": B}


def test_missing_objects(chain: GitChain) -> None:
    assert chain.git is not None
    _rejected(chain.push("alice", up("main", Z, X)), 422, "missing objects")
    _rejected(chain.push("alice", up("main", Z, C)), 422, "missing objects")  # C is in p1, not named
    chain.git.add_pack(pack("empty"))  # a known pack without C
    _rejected(chain.push("alice", up("main", Z, C), pack_digest=pack("empty")), 422, "missing objects")
    chain.git.add_commit(chain.repo_id(), sha("orphan"), [X], pack=pack("p3"))  # its parent is missing
    _rejected(chain.push("alice", up("main", Z, sha("orphan")), pack_digest=pack("p3")), 422, "missing")


def test_all_or_nothing_with_per_ref_reasons(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, A), up("dev", Z, A))
    r = chain.push(
        "bob",
        up("main", A, B),  # fine on its own
        up("dev", B, D),  # stale
        up("feature", Z, X),  # missing objects
        up("refs/tags/v1", Z, A),  # fine on its own
    )
    _rejected(r, 409, "push rejected: refs/heads/dev stale info (and 1 more)")
    assert refs_of(r) == [
        ("refs/heads/main", False, "atomic push failed"),
        ("refs/heads/dev", False, "stale info"),
        ("refs/heads/feature", False, "missing objects"),
        ("refs/tags/v1", False, "atomic push failed"),
    ]
    assert chain.refs() == {"refs/heads/main": A, "refs/heads/dev": A}
    assert Receipt.from_json(r.to_json()) == r


def test_a_push_sees_the_packs_of_accepted_pushes_only(chain: GitChain) -> None:
    assert chain.git is not None
    rid = chain.repo_id()
    chain.git.add_commit(rid, sha("e"), [C], pack=pack("p4"))
    chain.git.add_commit(rid, sha("f"), [sha("e")], pack=pack("p5"))
    # p4 needs C, which only p1 holds, and no accepted push named p1 yet.
    _rejected(chain.push("alice", up("main", Z, sha("e")), pack_digest=pack("p4")), 422, "missing objects")
    _rejected(chain.push("alice", up("main", A, C), pack_digest=pack("p1")), 409)  # stale old value
    assert chain.state.repo_packs(rid) == ()  # a refused push adds no pack
    # In one block: the push naming p1 is accepted, so the next one (naming p4) sees C.
    txs = [
        chain.node_tx(
            "alice", "git.push_refs", {"owner": "alice", "repo": "r", "pack_digest": p, "updates": [u]}
        )
        for p, u in ((pack("p1"), up("main", Z, C)), (pack("p4"), up("main", C, sha("e"))))
    ]
    result = chain.block(*txs)
    assert [r.ok for r in result.receipts] == [True, True]
    assert chain.state.repo_packs(rid) == (pack("p1"), pack("p4"))
    # Later blocks see every accepted pack, in the order the pushes were accepted.
    assert chain.push("alice", up("main", sha("e"), sha("f")), pack_digest=pack("p5")).ok
    assert chain.state.repo_packs(rid) == (pack("p1"), pack("p4"), pack("p5"))


# -- permissions ------------------------------------------------------------------------------


def test_permissions(chain: GitChain) -> None:
    chain.ok("alice", "repo.create", owner="alice", name="secret", private=True)
    _rejected(chain.push("bob", up("main", Z, A), repo="secret"), 404, "not found")
    missing = chain.push("bob", up("main", Z, A), repo="nothing")
    _rejected(missing, 404, "not found")
    _rejected(chain.push("dave", up("main", Z, A)), 403, "Permission to alice/r.git denied to dave.")
    _rejected(chain.push("carol", up("main", Z, A)), 403, "denied to carol")  # public: read only
    assert chain.push(ADMIN, up("main", Z, A)).ok  # site admin
    chain.ok("alice", "repo.update", owner="alice", repo="r", archived=True)
    _rejected(chain.push("alice", up("main", A, B)), 403, "Repository was archived so is read-only.")
    chain.ok("alice", "repo.update", owner="alice", repo="r", archived=False)
    assert chain.push("bob", up("main", A, B)).ok


def test_org_team_write_access_may_push(chain: GitChain) -> None:
    chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    chain.ok("alice", "org.set_membership", org="acme", user="carol")
    chain.ok("alice", "team.create", org="acme", name="core")
    chain.ok("alice", "team.set_membership", org="acme", team_slug="core", user="carol")
    chain.ok("alice", "repo.create", owner="acme", name="engine", private=True)
    args = {"org": "acme", "team_slug": "core", "owner": "acme", "repo": "engine"}
    payload = {"owner": "acme", "repo": "engine", "updates": [up("main", Z, sha("engine"))]}
    repo = chain.state.repo_by_name("acme", "engine")
    assert repo is not None and chain.git is not None
    chain.git.add_commit(repo.repo_id, sha("engine"))
    _rejected(chain.do("carol", "git.push_refs", **payload), 403, "denied")  # org member: read
    chain.ok("alice", "team.set_repo_permission", **args, permission="write")
    assert chain.do("carol", "git.push_refs", **payload).ok
    assert chain.state.refs(repo.repo_id) == (("refs/heads/main", sha("engine")),)


def test_a_view_that_cannot_answer_stops_the_block_instead_of_recording_a_receipt(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, A))
    tx = chain.node_tx(
        "alice",
        "git.push_refs",
        {"owner": "alice", "repo": "r", "pack_digest": pack("never-received"), "updates": [up("main", A, B)]},
    )
    before = chain.state.snapshot()
    with pytest.raises(GitViewError, match="not held"):
        execute_block(chain.state, chain.state.app_hash, chain.ctx(), [tx])
    assert chain.state.snapshot() == before


def test_no_git_view_is_a_503(chain: GitChain) -> None:
    chain.git = None
    _rejected(chain.push("alice", up("main", Z, A)), 503, "git objects unavailable")
    _rejected(chain.push("dave", up("main", Z, A)), 403)  # permission is still checked first
    tx = chain.node_tx(
        "alice", "git.push_refs", {"owner": "alice", "repo": "r", "updates": [up("main", Z, A)]}
    )
    state: LedgerState = chain.state
    plain = BlockContext(CHAIN_ID, state.height + 1, GENESIS_MS, VALIDATORS)
    assert precheck_transaction(state, plain, tx).code == 503
    with_git = BlockContext(CHAIN_ID, state.height + 1, GENESIS_MS, VALIDATORS, MemoryGitView())
    assert (
        precheck_transaction(state, with_git, tx).message == "push rejected: refs/heads/main missing objects"
    )


# -- payload validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "field"),
    [
        (up("refs/remotes/origin/main", Z, A), "ref must start with refs/heads/ or refs/tags/"),
        ({"ref": "HEAD", "old": Z, "new": A}, "payload.updates.0.ref: ref must start with"),
        (up("a..b", Z, A), "not a valid git ref name"),
        (up("x.lock/y", Z, A), "not a valid git ref name"),
        (up("-x", Z, A), "not a valid git ref name"),
        (up("a b", Z, A), "not a valid git ref name"),
        (up("refs/heads/", Z, A), "not a valid git ref name"),
        (up("main", Z, A.upper()), "payload.updates.0.new"),
        (up("main", "abc", A), "payload.updates.0.old"),
        (up("main", A, A), "new must differ from old"),
        (up("main", Z, Z), "new must differ from old"),
        ({"ref": "refs/heads/main", "old": Z, "new": A, "force": "yes"}, "payload.updates.0.force"),
        ({"ref": "refs/heads/main", "old": Z, "new": A, "extra": 1}, "payload.updates.0.extra"),
    ],
)
def test_bad_updates_are_422(chain: GitChain, update: dict[str, Any], field: str) -> None:
    _rejected(chain.push("alice", update), 422, field)


def test_push_shape_limits(chain: GitChain) -> None:
    _rejected(chain.push("alice"), 422, "payload.updates")  # at least one update
    _rejected(chain.push("alice", up("main", Z, A), up("main", Z, B)), 422, "only once")
    _rejected(chain.push("alice", up("main", Z, A), pack_digest="abc"), 422, "payload.pack_digest")
    many = [up(f"b{i}", Z, A) for i in range(1001)]
    _rejected(chain.push("alice", *many), 422, "payload.updates")
    assert chain.push("alice", *many[:1000]).ok
    assert len(chain.refs()) == 1000


# -- branch protection ----------------------------------------------------------------------


def protect(chain: GitChain, branch: str = "main", **settings: Any) -> Receipt:
    return chain.ok("alice", "repo.set_branch_protection", owner="alice", repo="r", branch=branch, **settings)


def test_set_and_remove_branch_protection(chain: GitChain) -> None:
    rid = chain.repo_id()
    bob = chain.state.user_by_login("bob")
    carol = chain.state.user_by_login("carol")
    assert bob and carol
    protect(chain, restrict_pushers=["carol", "BOB", "bob"], required_approving_review_count=2)
    assert chain.state.branch_protection(rid, "main") == BranchProtection(
        rid, "main", False, False, 2, tuple(sorted((bob.user_id, carol.user_id)))
    )
    event = chain.results[-1].events[0]
    assert event.type == "BranchProtectionSet"
    assert event.data["restrict_pushers"] == sorted((bob.user_id, carol.user_id))
    same = chain.ok(
        "alice",
        "repo.set_branch_protection",
        owner="alice",
        repo="r",
        branch="main",
        restrict_pushers=["bob", "carol"],
        required_approving_review_count=2,
    )
    assert same.events == 0  # nothing changes
    protect(chain, allow_force_pushes=True)  # a set replaces the whole protection
    assert chain.state.branch_protection(rid, "main") == BranchProtection(rid, "main", True, False, 0, ())
    protect(chain, branch="release/1.x", allow_deletions=True)
    assert [p.branch for p in chain.state.branch_protections(rid)] == ["main", "release/1.x"]
    assert chain.state.branch_protection(rid, "Main") is None  # branch names are case-sensitive
    chain.ok("alice", "repo.remove_branch_protection", owner="alice", repo="r", branch="main")
    assert chain.state.branch_protection(rid, "main") is None
    assert chain.results[-1].events[0].type == "BranchProtectionRemoved"
    _rejected(chain.do("alice", "repo.remove_branch_protection", owner="alice", repo="r", branch="main"), 404)


def test_branch_protection_commands_need_repo_admin_and_valid_input(chain: GitChain) -> None:
    base = {"owner": "alice", "repo": "r", "branch": "main"}
    _rejected(chain.do("bob", "repo.set_branch_protection", **base), 403, "admin")
    _rejected(chain.do("bob", "repo.remove_branch_protection", **base), 403, "admin")
    chain.ok("alice", "repo.create", owner="alice", name="secret", private=True)
    _rejected(chain.do("bob", "repo.set_branch_protection", **dict(base, repo="secret")), 404)
    _rejected(
        chain.do("alice", "repo.set_branch_protection", **base, restrict_pushers=["ghost"]), 422, "ghost"
    )
    for count in (-1, 7):
        r = chain.do("alice", "repo.set_branch_protection", **base, required_approving_review_count=count)
        _rejected(r, 422, "payload.required_approving_review_count")
    _rejected(
        chain.do("alice", "repo.set_branch_protection", **dict(base, branch="a..b")), 422, "payload.branch"
    )
    _rejected(chain.do("alice", "repo.set_branch_protection", **base, allow_deletions=1), 422)
    chain.ok("alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="admin")
    assert chain.do("bob", "repo.set_branch_protection", **base).ok
    chain.ok("alice", "repo.update", owner="alice", repo="r", archived=True)
    _rejected(chain.do("alice", "repo.set_branch_protection", **base), 403, "archived")


def test_protected_branch_refuses_force_pushes_unless_allowed(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, B))
    protect(chain)
    _rejected(chain.push("bob", up("main", B, D)), 409, "non-fast-forward")
    r = chain.push("alice", up("main", B, D, force=True))  # admins too
    _rejected(r, 403, "protected branch: force push not allowed")
    assert chain.push("bob", up("main", B, C), pack_digest=pack("p1")).ok  # fast-forward is fine
    protect(chain, allow_force_pushes=True)
    assert chain.push("bob", up("main", C, D, force=True)).ok
    _rejected(chain.push("bob", up("main", D, B)), 409, "non-fast-forward")  # force is still needed


def test_protected_branch_refuses_deletion_unless_allowed(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, A), up("other", Z, A))
    protect(chain)
    r = chain.push("alice", up("main", A, Z), up("other", A, Z))
    _rejected(r, 403, "protected branch: deletion not allowed")
    assert refs_of(r) == [
        ("refs/heads/main", False, "protected branch: deletion not allowed"),
        ("refs/heads/other", False, "atomic push failed"),
    ]
    protect(chain, allow_deletions=True, required_approving_review_count=1)
    assert chain.push("bob", up("main", A, Z)).ok  # reviews guard changes, not an allowed deletion
    assert chain.refs() == {"refs/heads/other": A}


def test_restrict_pushers(chain: GitChain) -> None:
    chain.ok("alice", "collaborator.set", owner="alice", repo="r", user="carol", permission="maintain")
    chain.push("alice", up("main", Z, A))
    protect(chain, restrict_pushers=["carol"], allow_deletions=True)
    _rejected(chain.push("bob", up("main", A, B)), 403, "protected branch: not allowed to push")
    _rejected(chain.push("bob", up("main", A, Z)), 403, "not allowed to push")  # deleting is pushing
    assert chain.push("carol", up("main", A, B)).ok
    assert chain.push("alice", up("main", B, C), pack_digest=pack("p1")).ok  # repo admins may push
    assert chain.git is not None
    chain.git.add_commit(chain.repo_id(), sha("e"), [C], pack=pack("p6"))
    assert chain.push(ADMIN, up("main", C, sha("e")), pack_digest=pack("p6")).ok  # site admins are admins
    assert chain.push("bob", up("other", Z, A)).ok  # other branches are not protected
    protect(chain, branch="new", restrict_pushers=["carol"])
    _rejected(chain.push("bob", up("new", Z, A)), 403, "not allowed to push")  # creating is pushing


def test_required_reviews_force_a_pull_request(chain: GitChain) -> None:
    chain.push("alice", up("main", Z, A))
    protect(chain, required_approving_review_count=1)
    r = chain.push("bob", up("main", A, B))
    _rejected(r, 403, "protected branch: changes must be made through a pull request")
    _rejected(chain.push("alice", up("main", A, B)), 403, "pull request")  # admins too
    protect(chain, branch="fresh", required_approving_review_count=1)
    assert chain.push("bob", up("fresh", Z, A)).ok  # creating the branch is allowed
    _rejected(chain.push("bob", up("fresh", A, B)), 403, "pull request")
    chain.ok("alice", "repo.remove_branch_protection", owner="alice", repo="r", branch="main")
    assert chain.push("bob", up("main", A, B)).ok


def test_tags_are_not_branch_protected(chain: GitChain) -> None:
    protect(chain, branch="v1", restrict_pushers=["carol"])
    assert chain.push("bob", up("refs/tags/v1", Z, A)).ok


# -- repository deletion -------------------------------------------------------------------


def test_deleting_a_repo_drops_its_refs_and_protections(chain: GitChain) -> None:
    rid = chain.repo_id()
    chain.push("alice", up("main", Z, A))
    protect(chain)
    chain.ok("alice", "repo.delete", owner="alice", repo="r")
    assert chain.state.refs(rid) == () and chain.state.branch_protections(rid) == ()
    assert chain.state.ref(rid, "refs/heads/main") is None
    chain.ok("alice", "repo.create", owner="alice", name="r")
    assert chain.refs() == {}
    assert chain.state.branch_protection(chain.repo_id(), "main") is None
    snapshot = chain.state.snapshot()
    assert "group:refs" not in snapshot and "group:branch_protection" not in snapshot


def test_rebuilding_state_by_folding_gives_the_same_refs(chain: GitChain) -> None:
    from domain.evolve import fold_block
    from tests.test_ledger_support import genesis

    chain.push("alice", up("main", Z, A), up("refs/tags/v1", Z, A))
    protect(chain, restrict_pushers=["bob"])
    chain.push("bob", up("main", A, B), up("refs/tags/v1", A, Z, force=True))
    state = genesis().state
    for result in chain.results:
        fork = state.fork()
        fold_block(fork, result.height, result.app_hash, [r.tx_id for r in result.receipts], result.events)
        fork.merge_into_parent()
    assert state.snapshot() == chain.state.snapshot()
    assert state.refs(chain.repo_id()) == (("refs/heads/main", B),)


def test_execute_block_without_a_view_keeps_other_commands_working(chain: GitChain) -> None:
    state = chain.state
    tx = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "plain"})
    result = execute_block(
        state, state.app_hash, BlockContext(CHAIN_ID, state.height + 1, 0, VALIDATORS), [tx]
    )
    assert result.receipts[0].ok


def test_only_a_node_that_received_a_pack_may_name_it(chain: GitChain) -> None:
    """Digests are public: a user-signed push may not name a pack it never delivered."""
    chain.ok(ADMIN, "user.add_key", login="carol", public_key=user_public_key("carol"), title="laptop")
    chain.ok("alice", "collaborator.set", owner="alice", repo="r", user="carol", permission="write")
    stolen = {"owner": "alice", "repo": "r", "pack_digest": pack("p1"), "updates": [up("main", Z, C)]}
    receipt = chain.run(chain.user_tx("carol", "git.push_refs", stolen))
    _rejected(receipt, 403, "must be made over git smart HTTP")
    # Attested by the node that received the pack, the same push goes through.
    assert chain.do("carol", "git.push_refs", **stolen).ok
    # Once accepted for this repository, its packs may be named by anyone who may push there.
    again = {"owner": "alice", "repo": "r", "pack_digest": pack("p1"), "updates": [up("other", Z, B)]}
    assert chain.run(chain.user_tx("carol", "git.push_refs", again)).ok
