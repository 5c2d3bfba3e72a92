"""Each command's happy path and each rejection code, executed through real blocks."""

from __future__ import annotations

import hashlib

import pytest

from commands.envelope import decode_transaction
from commands.ledger import Receipt, execute_block, precheck_transaction
from domain.events import RecordedEvent
from tests.test_ledger_support import (
    ADMIN,
    CHAIN_ID,
    Chain,
    token_hash,
    user_key_id,
    user_public_key,
    user_seed,
)


def _rejected(receipt: Receipt, code: int, fragment: str = "") -> None:
    assert not receipt.ok and receipt.code == code, receipt
    assert fragment.lower() in receipt.message.lower(), receipt
    assert receipt.events == 0


@pytest.fixture
def chain() -> Chain:
    c = Chain()
    c.add_user("alice", with_key=True)
    c.add_user("bob", with_key=True)
    c.add_user("carol")
    return c


# -- envelope, replay, authentication ---------------------------------------------


def test_undecodable_and_non_canonical_transactions_get_400_receipts(chain: Chain) -> None:
    good = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"})
    spaced = good.replace(b'"kind":', b'"kind": ')
    result = chain.block(b"not json", spaced, b'{"kind":1}')
    assert [r.code for r in result.receipts] == [400, 400, 400]
    assert "canonical" in result.receipts[1].message
    assert [r.index for r in result.receipts] == [0, 1, 2]
    assert result.receipts[0].tx_id == hashlib.sha256(b"not json").hexdigest()
    assert result.events == ()


def test_wrong_chain_id_is_rejected(chain: Chain) -> None:
    tx = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}, chain_id="other-chain")
    _rejected(chain.run(tx), 400, "chain")


def test_replayed_transaction_is_409_even_in_a_later_block(chain: Chain) -> None:
    tx = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"})
    first = chain.block(tx, tx)
    assert first.receipts[0].ok
    _rejected(first.receipts[1], 409, "duplicate transaction")
    _rejected(chain.run(tx), 409, "duplicate transaction")


def test_rejected_transaction_id_is_still_recorded_as_applied(chain: Chain) -> None:
    tx = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "bad name"})
    _rejected(chain.run(tx), 422)
    assert chain.state.is_applied(hashlib.sha256(tx).hexdigest())
    _rejected(chain.run(tx), 409, "duplicate")


def test_token_revoked_in_an_earlier_transaction_fails_at_apply_time(chain: Chain) -> None:
    revoke = chain.node_tx("alice", "token.revoke", {"login": "alice", "token_id": "tok-alice"})
    after = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"})
    result = chain.block(revoke, after)
    assert result.receipts[0].ok
    _rejected(result.receipts[1], 401, "revoked")
    assert chain.state.token_by_id("tok-alice").revoked  # type: ignore[union-attr]


def test_unknown_token_or_token_of_someone_else_is_401(chain: Chain) -> None:
    _rejected(
        chain.run(chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}, token_id="nope")),
        401,
    )
    stolen = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}, token_id="tok-bob")
    _rejected(chain.run(stolen), 401, "unknown token")


def test_node_attestation_must_be_signed_by_the_named_validator(chain: Chain) -> None:
    forged = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}, node=2, seed=b"\x09" * 32)
    _rejected(chain.run(forged), 401, "signature")
    tx = decode_transaction(chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}, node=1))
    mismatched = tx.model_copy(update={"submitted_by": 0}).encode()
    _rejected(chain.run(mismatched), 401)
    out_of_range = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}, node=3)
    assert chain.run(out_of_range).ok  # index 3 exists; 4 would not
    tx4 = decode_transaction(out_of_range).model_copy(update={"submitted_by": 4}).encode()
    _rejected(chain.run(tx4), 401, "validator")


def test_user_signature_happy_path_and_failures(chain: Chain) -> None:
    assert chain.run(chain.user_tx("alice", "repo.create", {"owner": "alice", "name": "signed"})).ok
    bad_sig = chain.user_tx("alice", "repo.create", {"owner": "alice", "name": "x"}, seed=user_seed("bob"))
    _rejected(chain.run(bad_sig), 401, "bad signature")
    others_key = chain.user_tx(
        "alice", "repo.create", {"owner": "alice", "name": "x"}, key_id=user_key_id("bob")
    )
    _rejected(chain.run(others_key), 401, "unknown signing key")
    no_key = chain.user_tx("carol", "repo.create", {"owner": "carol", "name": "x"})
    _rejected(chain.run(no_key), 401, "unknown signing key")
    tampered = decode_transaction(chain.user_tx("alice", "repo.create", {"owner": "alice", "name": "y"}))
    tampered_bytes = tampered.model_copy(update={"payload": {"owner": "alice", "name": "z"}}).encode()
    _rejected(chain.run(tampered_bytes), 401, "bad signature")


def test_unknown_actor_and_unknown_kind(chain: Chain) -> None:
    _rejected(chain.run(chain.node_tx("ghost", "repo.create", {"owner": "ghost", "name": "r"})), 401)
    _rejected(chain.do("alice", "repo.explode"), 400, "unknown transaction kind")


def test_payload_validation_errors_are_422_and_name_the_field(chain: Chain) -> None:
    r = chain.do("alice", "repo.create", owner="alice", name="ok", private="yes", extra=1)
    _rejected(r, 422, "payload.private")
    assert "payload.extra" in r.message
    _rejected(chain.do("alice", "repo.create", owner="alice"), 422, "payload.name")


# -- users, keys, tokens -------------------------------------------------------------


def test_user_create_is_site_admin_only_and_logins_are_unique_case_insensitively(chain: Chain) -> None:
    r = chain.ok(ADMIN, "user.create", login="Dave", email="dave@example.com")
    assert chain.state.user(r.result["user_id"]).login == "Dave"  # type: ignore[union-attr]
    _rejected(chain.do(ADMIN, "user.create", login="dave", email="d@example.com"), 409, "taken")
    _rejected(chain.do("alice", "user.create", login="eve", email="e@example.com"), 403)
    chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    _rejected(chain.do(ADMIN, "user.create", login="ACME", email="a@example.com"), 409)


@pytest.mark.parametrize("login", ["", "-x", "x-", "a--b", "a_b", "a" * 40, "dé"])
def test_bad_logins_are_422(chain: Chain, login: str) -> None:
    _rejected(chain.do(ADMIN, "user.create", login=login, email="x@example.com"), 422, "payload.login")


def test_bad_email_is_422(chain: Chain) -> None:
    _rejected(chain.do(ADMIN, "user.create", login="zed", email="not-an-email"), 422, "payload.email")


def test_add_key_by_self_or_admin_and_conflicts(chain: Chain) -> None:
    carol = chain.state.user_by_login("carol")
    assert carol is not None
    _rejected(chain.do("bob", "user.add_key", login="carol", public_key=user_public_key("carol")), 403)
    r = chain.ok(ADMIN, "user.add_key", login="carol", public_key=user_public_key("carol"), title="t")
    assert r.result == {"key_id": user_key_id("carol")}
    _rejected(
        chain.do("bob", "user.add_key", login="bob", public_key=user_public_key("carol")), 409, "in use"
    )
    _rejected(chain.do("bob", "user.add_key", login="nobody", public_key=user_public_key("x")), 404)
    _rejected(chain.do("bob", "user.add_key", login="bob", public_key="AB" * 32), 422, "payload.public_key")


def test_token_issue_and_revoke(chain: Chain) -> None:
    r = chain.ok(
        "bob", "token.issue", login="bob", token_id="bob-2", token_hash=token_hash("b2"), scopes=["repo"]
    )
    assert r.result == {"token_id": "bob-2"}
    tok = chain.state.token_by_hash(token_hash("b2"))
    assert tok is not None and tok.scopes == ("repo",) and not tok.revoked
    _rejected(chain.do("bob", "token.issue", login="alice", token_id="x", token_hash=token_hash("x")), 403)
    _rejected(chain.do("bob", "token.issue", login="bob", token_id="bob-2", token_hash=token_hash("y")), 409)
    _rejected(chain.do("bob", "token.issue", login="bob", token_id="bob-3", token_hash=token_hash("b2")), 409)
    _rejected(chain.do("bob", "token.revoke", login="alice", token_id="tok-alice"), 403)
    _rejected(chain.do("bob", "token.revoke", login="bob", token_id="tok-alice"), 404)
    chain.ok(ADMIN, "token.revoke", login="bob", token_id="bob-2")
    _rejected(chain.do(ADMIN, "token.revoke", login="bob", token_id="bob-2"), 409, "already revoked")
    assert [t.token_id for t in chain.state.tokens_of_user(tok.user_id)] == ["bob-2", "tok-bob"]


# -- organizations and teams ----------------------------------------------------------


def test_org_create_and_membership(chain: Chain) -> None:
    _rejected(chain.do("alice", "org.create", login="acme", admin="alice"), 403)
    r = chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    org_id = r.result["org_id"]
    assert [e.type for e in chain.results[-1].events] == ["OrgCreated", "OrgMemberSet"]
    alice = chain.state.user_by_login("alice")
    bob = chain.state.user_by_login("bob")
    assert alice and bob
    assert chain.state.org_role(org_id, alice.user_id) == "owner"
    _rejected(chain.do(ADMIN, "org.create", login="ACME", admin="alice"), 409)
    _rejected(chain.do(ADMIN, "org.create", login="alice", admin="alice"), 409)
    _rejected(chain.do(ADMIN, "org.create", login="-bad", admin="alice"), 422)
    _rejected(chain.do(ADMIN, "org.create", login="other", admin="nobody"), 404)
    _rejected(chain.do("bob", "org.set_membership", org="acme", user="bob", role="member"), 403)
    chain.ok("alice", "org.set_membership", org="acme", user="bob", role="member")
    assert chain.state.org_role(org_id, bob.user_id) == "member"
    assert chain.do("alice", "org.set_membership", org="acme", user="bob", role="member").events == 0
    _rejected(
        chain.do("alice", "org.set_membership", org="acme", user="bob", role="boss"), 422, "payload.role"
    )
    _rejected(chain.do("alice", "org.set_membership", org="nope", user="bob"), 404)
    _rejected(chain.do("alice", "org.set_membership", org="acme", user="alice", role="member"), 422, "owner")
    _rejected(chain.do("alice", "org.remove_member", org="acme", user="alice"), 422, "owner")
    chain.ok("alice", "org.set_membership", org="acme", user="bob", role="owner")
    chain.ok("bob", "org.remove_member", org="acme", user="alice")
    assert chain.state.org_role(org_id, alice.user_id) is None
    _rejected(chain.do("bob", "org.remove_member", org="acme", user="alice"), 404)


def test_member_may_leave_and_leaves_every_team(chain: Chain) -> None:
    chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    chain.ok("alice", "org.set_membership", org="acme", user="bob")
    for name in ("Core Devs", "Docs"):
        chain.ok("alice", "team.create", org="acme", name=name)
        chain.ok(
            "alice", "team.set_membership", org="acme", team_slug=name.lower().replace(" ", "-"), user="bob"
        )
    _rejected(chain.do("carol", "org.remove_member", org="acme", user="bob"), 403)
    chain.ok("bob", "org.remove_member", org="acme", user="bob")
    events = chain.results[-1].events
    assert [e.type for e in events] == ["TeamMemberRemoved", "TeamMemberRemoved", "OrgMemberRemoved"]
    bob = chain.state.user_by_login("bob")
    assert bob is not None and chain.state.teams_of_user(bob.user_id) == ()


def test_teams(chain: Chain) -> None:
    chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    chain.ok("alice", "org.set_membership", org="acme", user="bob")
    _rejected(chain.do("bob", "team.create", org="acme", name="Core"), 403)
    r = chain.ok("alice", "team.create", org="acme", name="Core  Devs!", description="d", privacy="closed")
    assert r.result["slug"] == "core-devs"
    _rejected(chain.do("alice", "team.create", org="acme", name="core devs"), 409)
    _rejected(chain.do("alice", "team.create", org="acme", name="!!!"), 422, "payload.name")
    _rejected(chain.do("alice", "team.create", org="acme", name="x", privacy="open"), 422, "payload.privacy")
    _rejected(chain.do("alice", "team.set_membership", org="acme", team_slug="core-devs", user="carol"), 422)
    _rejected(chain.do("alice", "team.set_membership", org="acme", team_slug="nope", user="bob"), 404)
    _rejected(chain.do("bob", "team.set_membership", org="acme", team_slug="core-devs", user="bob"), 403)
    chain.ok("alice", "team.set_membership", org="acme", team_slug="core-devs", user="bob", role="maintainer")
    chain.ok("alice", "org.set_membership", org="acme", user="carol")
    chain.ok("bob", "team.set_membership", org="acme", team_slug="core-devs", user="carol")  # maintainer may
    team = chain.state.team_by_slug(chain.state.org_by_login("acme").org_id, "core-devs")  # type: ignore[union-attr]
    assert team is not None and team.privacy == "closed"
    assert [role for _, role in chain.state.team_members(team.team_id)].count("maintainer") == 1
    chain.ok("carol", "team.remove_member", org="acme", team_slug="core-devs", user="carol")
    _rejected(chain.do("carol", "team.remove_member", org="acme", team_slug="core-devs", user="bob"), 403)


def test_team_repo_permission(chain: Chain) -> None:
    chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    chain.ok("alice", "team.create", org="acme", name="core")
    chain.ok("alice", "repo.create", owner="acme", name="engine", private=True)
    chain.ok("bob", "repo.create", owner="bob", name="mine")
    args = {"org": "acme", "team_slug": "core", "owner": "acme", "repo": "engine"}
    _rejected(chain.do("bob", "team.set_repo_permission", **args, permission="write"), 404)  # private, hidden
    _rejected(chain.do("alice", "team.set_repo_permission", **args, permission="god"), 422)
    chain.ok("alice", "team.set_repo_permission", **args, permission="write")
    repo = chain.state.repo_by_name("acme", "engine")
    assert repo is not None
    team_id = chain.state.teams_of_repo(repo.repo_id)[0][0]
    assert chain.state.team_repos(team_id) == ((repo.repo_id, "write"),)
    other = dict(args, owner="bob", repo="mine")
    _rejected(chain.do(ADMIN, "team.set_repo_permission", **other, permission="read"), 422, "does not belong")
    chain.ok("alice", "team.remove_repo", **args)
    assert chain.state.teams_of_repo(repo.repo_id) == ()
    _rejected(chain.do("alice", "team.remove_repo", **args), 404)


# -- repositories and collaborators ----------------------------------------------------


def test_repo_create(chain: Chain) -> None:
    r = chain.ok("alice", "repo.create", owner="alice", name="Hello.World", description="hi", private=True)
    repo = chain.state.repo(r.result["repo_id"])
    assert repo is not None and repo.default_branch == "main" and repo.private and repo.owner_type == "User"
    _rejected(chain.do("alice", "repo.create", owner="alice", name="hello.world"), 409, "already exists")
    _rejected(chain.do("bob", "repo.create", owner="alice", name="x"), 403)
    assert chain.ok(ADMIN, "repo.create", owner="alice", name="by-admin").ok
    _rejected(chain.do("alice", "repo.create", owner="nobody", name="x"), 404)
    for bad in ("", ".", "..", "x.git", "sp ace", "a" * 101, "naïve"):
        _rejected(chain.do("alice", "repo.create", owner="alice", name=bad), 422, "payload.name")
    _rejected(chain.do("alice", "repo.create", owner="alice", name="b", default_branch="a..b"), 422)
    assert [x.name for x in chain.state.repos_owned_by(repo.owner_id)] == ["by-admin", "Hello.World"]


def test_org_members_create_repos_and_get_admin_on_them(chain: Chain) -> None:
    chain.ok(ADMIN, "org.create", login="acme", admin="alice")
    _rejected(chain.do("bob", "repo.create", owner="acme", name="x"), 403)
    chain.ok("alice", "org.set_membership", org="acme", user="bob")
    r = chain.ok("bob", "repo.create", owner="acme", name="x", private=True)
    assert [e.type for e in chain.results[-1].events] == ["RepoCreated", "CollaboratorSet"]
    bob = chain.state.user_by_login("bob")
    assert bob is not None
    assert chain.state.collaborators(r.result["repo_id"]) == ((bob.user_id, "admin"),)
    chain.ok("alice", "repo.create", owner="acme", name="y")  # an owner gets no extra grant
    assert [e.type for e in chain.results[-1].events] == ["RepoCreated"]


def test_repo_update_rename_and_archive(chain: Chain) -> None:
    chain.ok("alice", "repo.create", owner="alice", name="r1")
    chain.ok("alice", "repo.create", owner="alice", name="r2")
    chain.ok("alice", "collaborator.set", owner="alice", repo="r1", user="bob", permission="maintain")
    _rejected(chain.do("bob", "repo.update", owner="alice", repo="r1", description="x"), 403, "admin")
    _rejected(chain.do("alice", "repo.update", owner="alice", repo="r1", name="R2"), 409)
    r = chain.ok(
        "alice", "repo.update", owner="alice", repo="r1", name="R1", description="new", private=False
    )
    event = chain.results[-1].events[0]
    assert event.type == "RepoUpdated" and event.data["changes"] == {"name": "R1", "description": "new"}
    assert chain.state.repo_by_name("alice", "r1").name == "R1"  # type: ignore[union-attr]
    assert r.events == 1
    assert chain.do("alice", "repo.update", owner="alice", repo="r1", description="new").events == 0
    chain.ok("alice", "repo.update", owner="alice", repo="r1", archived=True)
    msg = "Repository was archived so is read-only."
    _rejected(chain.do("alice", "repo.update", owner="alice", repo="r1", description="y"), 403, msg)
    _rejected(chain.do("alice", "collaborator.set", owner="alice", repo="r1", user="carol"), 403, msg)
    _rejected(chain.do("alice", "repo.delete", owner="alice", repo="r1"), 403, msg)
    _rejected(chain.do("bob", "repo.update", owner="alice", repo="r1", archived=False), 403, "admin")
    chain.ok("alice", "repo.update", owner="alice", repo="r1", archived=False, description="back")
    assert not chain.state.repo_by_name("alice", "r1").archived  # type: ignore[union-attr]


def test_repo_delete(chain: Chain) -> None:
    r = chain.ok("alice", "repo.create", owner="alice", name="gone")
    chain.ok("alice", "collaborator.set", owner="alice", repo="gone", user="bob", permission="write")
    _rejected(chain.do("bob", "repo.delete", owner="alice", repo="gone"), 403)
    chain.ok("alice", "repo.delete", owner="alice", repo="gone")
    assert (
        chain.state.repo(r.result["repo_id"]) is None and chain.state.collaborators(r.result["repo_id"]) == ()
    )
    _rejected(chain.do("alice", "repo.delete", owner="alice", repo="gone"), 404)
    again = chain.ok("alice", "repo.create", owner="alice", name="gone")
    assert again.result["repo_id"] != r.result["repo_id"]


def test_private_repos_are_404_to_those_who_cannot_read_them(chain: Chain) -> None:
    chain.ok("alice", "repo.create", owner="alice", name="secret", private=True)
    for kind, extra in (
        ("repo.update", {"description": "x"}),
        ("repo.delete", {}),
        ("collaborator.set", {"user": "bob"}),
        ("collaborator.remove", {"user": "bob"}),
    ):
        r = chain.do("bob", kind, owner="alice", repo="secret", **extra)
        _rejected(r, 404, "not found")
        missing = chain.do("bob", kind, owner="alice", repo="nothing", **extra)
        assert r.message == missing.message.replace("nothing", "secret")  # same answer as a missing repo
    chain.ok("alice", "collaborator.set", owner="alice", repo="secret", user="bob", permission="read")
    _rejected(chain.do("bob", "repo.update", owner="alice", repo="secret", description="x"), 403)


def test_collaborators(chain: Chain) -> None:
    chain.ok("alice", "repo.create", owner="alice", name="r")
    _rejected(chain.do("bob", "collaborator.set", owner="alice", repo="r", user="bob"), 403)
    chain.ok("alice", "collaborator.set", owner="alice", repo="r", user="bob")
    repo = chain.state.repo_by_name("alice", "r")
    bob = chain.state.user_by_login("bob")
    assert repo and bob
    assert chain.state.collaborators(repo.repo_id) == ((bob.user_id, "write"),)
    _rejected(chain.do("alice", "collaborator.set", owner="alice", repo="r", user="alice"), 422, "owner")
    _rejected(chain.do("alice", "collaborator.set", owner="alice", repo="r", user="ghost"), 404)
    _rejected(chain.do("alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="x"), 422)
    chain.ok("alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="admin")
    chain.ok(
        "bob", "collaborator.set", owner="alice", repo="r", user="carol", permission="triage"
    )  # now admin
    _rejected(chain.do("carol", "collaborator.remove", owner="alice", repo="r", user="bob"), 403)
    chain.ok("carol", "collaborator.remove", owner="alice", repo="r", user="carol")  # may leave
    chain.ok("alice", "collaborator.remove", owner="alice", repo="r", user="bob")
    _rejected(chain.do("alice", "collaborator.remove", owner="alice", repo="r", user="bob"), 404)
    assert chain.state.collaborators(repo.repo_id) == ()


# -- block mechanics -------------------------------------------------------------------


def test_recorded_events_carry_deterministic_metadata(chain: Chain) -> None:
    tx = chain.node_tx(ADMIN, "org.create", {"login": "acme", "admin": "alice"})
    result = chain.block(chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"}), tx)
    height = result.height
    org_events = [e for e in result.events if e.tx_index == 1]
    assert [(e.type, e.version, e.event_index) for e in org_events] == [
        ("OrgCreated", 1, 0),
        ("OrgMemberSet", 2, 1),
    ]
    admin = chain.state.user_by_login(ADMIN)
    assert admin is not None
    for e in org_events:
        assert isinstance(e, RecordedEvent)
        assert e.height == height and e.tx_id == hashlib.sha256(tx).hexdigest()
        assert e.timestamp_ms == chain.ctx(height).timestamp_ms and e.actor == admin.user_id
        assert e.payload().aggregate_id() == e.aggregate_id
    receipt = result.receipts[1]
    assert receipt.to_json()["result"] == {"org_id": org_events[0].aggregate_id}
    assert Receipt.from_json(receipt.to_json()) == receipt


def test_later_transactions_in_a_block_see_earlier_ones(chain: Chain) -> None:
    result = chain.block(
        chain.node_tx(ADMIN, "user.create", {"login": "dave", "email": "d@example.com"}),
        chain.node_tx(
            ADMIN,
            "token.issue",
            {"login": "dave", "token_id": "tok-dave", "token_hash": token_hash("d"), "scopes": ["repo"]},
        ),
    )
    chain.tokens["dave"] = "tok-dave"
    assert all(r.ok for r in result.receipts)
    result = chain.block(
        chain.node_tx("dave", "repo.create", {"owner": "dave", "name": "a"}),
        chain.node_tx("dave", "repo.create", {"owner": "dave", "name": "A"}),
    )
    assert [r.code for r in result.receipts] == [200, 409]


def test_precheck_leaves_state_untouched(chain: Chain) -> None:
    before = chain.state.snapshot()
    tx = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "r"})
    receipt = precheck_transaction(chain.state, chain.ctx(), tx)
    assert receipt.ok and receipt.result["repo_id"]
    assert chain.state.snapshot() == before
    assert not precheck_transaction(chain.state, chain.ctx(), b"junk").ok


def test_execute_block_refuses_wiring_mistakes(chain: Chain) -> None:
    with pytest.raises(ValueError, match="height"):
        execute_block(chain.state, chain.state.app_hash, chain.ctx(chain.state.height + 2), [])
    bad = chain.ctx()
    with pytest.raises(ValueError, match="chain"):
        execute_block(chain.state, chain.state.app_hash, type(bad)("x", bad.height, 0, bad.validators), [])
    assert CHAIN_ID == chain.state.chain_id
