"""Who may see a transaction (commands.visibility), on states built by the real handlers."""

from __future__ import annotations

from typing import Any

import pytest

from commands.handlers import COMMANDS
from commands.ledger import Receipt
from commands.visibility import TOUCHES, Credentials, RepoById, RepoNamed, can_see, touched_by_bytes
from domain.rules import LATEST, LEGACY
from tests.test_ledger_support import ADMIN, Chain

VIEWERS = ("admin", "alice", "bob", "carol", "dave", "anonymous")


@pytest.fixture
def chain() -> Chain:
    c = Chain()
    for login in ("alice", "bob", "carol", "dave"):
        c.add_user(login)
    return c


class Tx:
    def __init__(self, chain: Chain, raw: bytes) -> None:
        self.chain = chain
        self.raw = raw
        self.receipt: Receipt = chain.run(raw)

    def seen_by(self) -> set[str]:
        """Who may see the transaction on the chain's state as it is now."""
        what = touched_by_bytes(self.raw, self.receipt, self.receipt.height, rules=LATEST)
        out = set()
        for viewer in VIEWERS:
            user = self.chain.state.user_by_login(viewer)
            if can_see(self.chain.state, None if user is None else user.user_id, what):
                out.add(viewer)
        return out


def run(chain: Chain, actor: str, kind: str, **payload: Any) -> Tx:
    return Tx(chain, chain.node_tx(actor, kind, payload))


EVERYONE = set(VIEWERS)


def test_every_command_kind_is_classified() -> None:
    """A new command kind must say what it touches before its transactions can be shown."""
    assert set(TOUCHES) == set(COMMANDS)


def test_public_and_private_repositories(chain: Chain) -> None:
    public = run(chain, "alice", "repo.create", owner="alice", name="pub")
    private = run(chain, "alice", "repo.create", owner="alice", name="sec", private=True)
    grant = run(chain, "alice", "collaborator.set", owner="alice", repo="sec", user="bob", permission="read")
    protect = run(chain, "alice", "repo.set_branch_protection", owner="alice", repo="sec", branch="main")
    assert public.receipt.ok and private.receipt.ok and grant.receipt.ok and protect.receipt.ok
    assert public.seen_by() == EVERYONE
    for tx in (private, grant, protect):
        assert tx.seen_by() == {"admin", "alice", "bob"}
    # A refused attempt on the private repository by someone who cannot read it: the
    # would-be actor sees it, the repository's readers too, nobody else.
    refused = run(chain, "carol", "collaborator.set", owner="alice", repo="sec", user="carol")
    assert refused.receipt.code == 404
    assert refused.seen_by() == {"admin", "alice", "bob", "carol"}
    missing = run(chain, "carol", "repo.update", owner="alice", repo="nothing-here", description="x")
    assert missing.receipt.code == 404 and missing.seen_by() == {"admin", "carol"}


def test_judged_by_the_current_state(chain: Chain) -> None:
    """Made private later: hidden again; deleted: the actor and site admins only."""
    early = run(chain, "alice", "repo.create", owner="alice", name="r")
    update = run(chain, "alice", "repo.update", owner="alice", repo="r", description="hello")
    assert early.seen_by() == EVERYONE and update.seen_by() == EVERYONE
    run(chain, "alice", "collaborator.set", owner="alice", repo="r", user="bob", permission="read")
    run(chain, "alice", "repo.update", owner="alice", repo="r", private=True)
    assert early.seen_by() == update.seen_by() == {"admin", "alice", "bob"}
    run(chain, "alice", "repo.update", owner="alice", repo="r", name="renamed")
    assert update.seen_by() == {"admin", "alice", "bob"}  # the old name still means this repository
    run(chain, "alice", "repo.delete", owner="alice", repo="renamed")
    assert early.seen_by() == update.seen_by() == {"admin", "alice"}


def test_a_reused_name_does_not_reveal_the_old_repository(chain: Chain) -> None:
    secret = run(chain, "alice", "repo.create", owner="alice", name="x", private=True)
    protect = run(chain, "alice", "repo.set_branch_protection", owner="alice", repo="x", branch="hidden")
    run(chain, "alice", "repo.delete", owner="alice", repo="x")
    again = run(chain, "alice", "repo.create", owner="alice", name="x")
    later = run(chain, "alice", "repo.set_branch_protection", owner="alice", repo="x", branch="main")
    assert again.seen_by() == later.seen_by() == EVERYONE
    assert secret.seen_by() == protect.seen_by() == {"admin", "alice"}


def test_organizations_and_teams(chain: Chain) -> None:
    org = run(chain, ADMIN, "org.create", login="acme", admin="alice")
    member = run(chain, "alice", "org.set_membership", org="acme", user="bob", role="member")
    run(chain, "alice", "org.set_membership", org="acme", user="dave", role="member")
    secret = run(chain, "alice", "team.create", org="acme", name="Core", privacy="secret")
    closed = run(chain, "alice", "team.create", org="acme", name="Open", privacy="closed")
    joined = run(chain, "alice", "team.set_membership", org="acme", team_slug="core", user="dave")
    run(chain, "alice", "repo.create", owner="acme", name="pub")
    granted = run(
        chain,
        "alice",
        "team.set_repo_permission",
        org="acme",
        team_slug="open",
        owner="acme",
        repo="pub",
        permission="write",
    )
    members = {"admin", "alice", "bob", "dave"}
    assert org.seen_by() == member.seen_by() == members
    assert secret.seen_by() == joined.seen_by() == {"admin", "alice", "dave"}
    assert closed.seen_by() == granted.seen_by() == members
    # A member who leaves stops seeing the organization's inside, their own departure included.
    left = run(chain, "bob", "org.remove_member", org="acme", user="bob")
    assert left.receipt.ok and left.seen_by() == {"admin", "alice", "bob", "dave"}  # bob as its actor
    assert member.seen_by() == {"admin", "alice", "dave"}


def test_users_keys_and_tokens(chain: Chain) -> None:
    created = run(chain, ADMIN, "user.create", login="erin", email="erin@example.com")
    assert created.receipt.ok
    erin = chain.state.user_by_login("erin")
    assert erin is not None
    what = touched_by_bytes(created.raw, created.receipt, created.receipt.height, rules=LATEST)
    assert can_see(chain.state, erin.user_id, what)  # her own email
    assert created.seen_by() == {"admin"}
    token = run(chain, ADMIN, "token.issue", login="bob", token_id="tok-2", token_hash="ab" * 32)
    assert token.receipt.ok and token.seen_by() == {"admin"}  # not even bob
    key = run(chain, "alice", "user.add_key", login="alice", public_key="cd" * 32)
    assert key.receipt.ok and key.seen_by() == {"admin", "alice"}
    taken = run(chain, ADMIN, "user.create", login="bob", email="someone@example.com")
    assert taken.receipt.code == 409 and taken.seen_by() == {"admin"}


def test_what_is_not_understood_is_for_site_admins(chain: Chain) -> None:
    garbage = Tx(chain, b"not a transaction")
    assert garbage.receipt.code == 400 and garbage.seen_by() == {"admin"}
    unknown = run(chain, "alice", "repo.teleport", owner="alice", repo="r")
    assert unknown.receipt.code == 400 and unknown.seen_by() == {"admin"}
    invalid = run(chain, "alice", "repo.create", owner="alice", name="bad name!")
    assert invalid.receipt.code == 422 and invalid.seen_by() == {"admin", "alice"}
    assert touched_by_bytes(None, None, 1, rules=LATEST).resources == (Credentials(),)


def test_an_unauthenticated_actor_is_nobody(chain: Chain) -> None:
    """A transaction refused with 401 names an actor it could not prove: that user gets no claim."""
    run(chain, "alice", "repo.create", owner="alice", name="sec", private=True)
    forged = Tx(
        chain, chain.node_tx("carol", "repo.update", {"owner": "alice", "repo": "sec"}, token_id="nope")
    )
    assert forged.receipt.code == 401
    assert forged.seen_by() == {"admin", "alice"}  # alice reads the repository; carol proved nothing
    ghost = Tx(chain, chain.node_tx("ghost", "repo.create", {"owner": "ghost", "name": "r"}))
    assert ghost.receipt.code == 401
    chain.add_user("ghost")  # a login taken later does not inherit the failed attempt
    assert ghost.seen_by() == {"admin"}


def test_a_transaction_without_receipt_yet_has_no_proven_actor(chain: Chain) -> None:
    raw = chain.node_tx("alice", "repo.create", {"owner": "alice", "name": "soon"})
    what = touched_by_bytes(raw, None, chain.state.height + 1, rules=LATEST)
    assert what.actor is None and what.resources == (RepoNamed("alice", "soon"),)
    done = Tx(chain, raw)
    assert touched_by_bytes(raw, done.receipt, done.receipt.height, rules=LATEST).resources == (
        RepoById(done.receipt.result["repo_id"]),
    )


def test_payloads_are_read_under_the_protocol_rules_of_their_height(chain: Chain) -> None:
    """Version 2 takes any ref name in a push (the handler refuses it per ref); version 1
    refused the whole payload, so there it touched nothing anyone but the actor may see."""
    update = {"ref": "refs/heads/a..b", "old": "0" * 40, "new": "1" * 40}
    raw = chain.node_tx("alice", "git.push_refs", {"owner": "alice", "repo": "r", "updates": [update]})
    assert touched_by_bytes(raw, None, 5, rules=LATEST).resources == (RepoNamed("alice", "r"),)
    assert touched_by_bytes(raw, None, 5, rules=LEGACY).resources == (Credentials(),)
