"""Token scopes in the ledger: the pure rule (`commands.scopes`) and its check at apply time.

Under protocol version 2 a node-attested transaction may do only what its token's scopes
allow, whatever its user may do; under version 1 the same transactions are accepted (old
chains replay as they did). A transaction the user signed with their own key has no token
and acts with the user's full authority.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from commands import scopes
from commands.decision import Rejection
from commands.handlers import COMMANDS, parse_payload
from commands.ledger import Receipt
from commands.visibility import Touched, can_see, touched_by_bytes
from domain.events import ZERO_SHA
from domain.rules import LATEST, LEGACY, Rules
from tests.test_ledger_support import ADMIN, Chain, user_public_key
from tests.test_refs_handlers import GitChain

#: A valid payload of every command kind, naming the world of `world()` below.
SAMPLES: dict[str, dict[str, Any]] = {
    "user.create": {"login": "newbie", "email": "n@example.com"},
    "user.add_key": {"login": "alice", "public_key": user_public_key("alice")},
    "token.issue": {"login": "alice", "token_id": "t-new", "token_hash": "ab" * 32},
    "token.revoke": {"login": "alice", "token_id": "t-none"},
    "org.create": {"login": "neworg", "admin": "alice"},
    "org.set_membership": {"org": "acme", "user": "bob"},
    "org.remove_member": {"org": "acme", "user": "bob"},
    "team.create": {"org": "acme", "name": "Core"},
    "team.set_membership": {"org": "acme", "team_slug": "core", "user": "bob"},
    "team.remove_member": {"org": "acme", "team_slug": "core", "user": "bob"},
    "team.set_repo_permission": {
        "org": "acme",
        "team_slug": "core",
        "owner": "acme",
        "repo": "opub",
        "permission": "read",
    },
    "team.remove_repo": {"org": "acme", "team_slug": "core", "owner": "acme", "repo": "opub"},
    "repo.create": {"owner": "alice", "name": "fresh"},
    "repo.update": {"owner": "alice", "repo": "pub", "description": "x"},
    "repo.delete": {"owner": "alice", "repo": "pub"},
    "collaborator.set": {"owner": "alice", "repo": "pub", "user": "bob"},
    "collaborator.remove": {"owner": "alice", "repo": "pub", "user": "bob"},
    "git.push_refs": {
        "owner": "alice",
        "repo": "pub",
        "updates": [{"ref": "refs/heads/main", "old": ZERO_SHA, "new": "1" * 40}],
    },
    "repo.set_branch_protection": {"owner": "alice", "repo": "pub", "branch": "main"},
    "repo.remove_branch_protection": {"owner": "alice", "repo": "pub", "branch": "main"},
}


def sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def world(rules: Rules) -> GitChain:
    """alice owns `pub` and `priv` (private) and the organization acme (team core, repo opub);
    bob is a member of acme. Every token of the driver has every scope; scoped ones come later."""
    c = GitChain(rules)
    for login in ("alice", "bob"):
        c.add_user(login)
    c.ok("alice", "repo.create", owner="alice", name="pub")
    c.ok("alice", "repo.create", owner="alice", name="priv", private=True)
    c.ok(ADMIN, "org.create", login="acme", admin="alice")
    c.ok("alice", "org.set_membership", org="acme", user="bob", role="member")
    c.ok("alice", "team.create", org="acme", name="Core")
    c.ok("alice", "repo.create", owner="acme", name="opub")
    assert c.git is not None
    for name in ("pub", "priv"):
        c.git.add_commit(c.repo_id("alice", name), sha("a"))
    return c


def as_token(c: Chain, login: str, *granted: str) -> str:
    """A fresh token of `login` with exactly these scopes; returns its id."""
    token_id = f"{login}-{'-'.join(s.replace(':', '_') for s in granted) or 'none'}-{c.next_nonce()[-6:]}"
    c.issue_token(login, token_id, granted)
    return token_id


def run(c: Chain, actor: str, token_id: str, kind: str, **payload: Any) -> Receipt:
    return c.run(c.node_tx(actor, kind, payload, token_id=token_id))


def refused(receipt: Receipt, code: int, fragment: str = "") -> None:
    assert not receipt.ok and receipt.code == code, receipt
    assert fragment.lower() in receipt.message.lower(), receipt


# -- the pure rule -------------------------------------------------------------------------


def test_every_command_kind_has_a_scope_rule() -> None:
    c = world(LATEST)
    alice = c.state.user_by_login("alice")
    assert alice is not None and set(SAMPLES) == set(COMMANDS)
    for kind, payload in SAMPLES.items():
        parsed = parse_payload(kind, payload)
        assert not isinstance(parsed, Rejection), (kind, parsed)
        need = scopes.command_need(c.state, kind, parsed, alice)
        assert need.accepted and need.accepted <= scopes.KNOWN_SCOPES, kind


def test_scope_hierarchy_follows_github() -> None:
    assert scopes.expand(["admin:org"]) == {"admin:org", "write:org", "read:org"}
    assert {"public_repo", "repo:status"} <= scopes.expand(["repo"])
    assert scopes.expand(["user"]) >= {"read:user", "user:email", "user:follow"}
    assert scopes.expand(["admin:public_key"]) == {"admin:public_key", "write:public_key", "read:public_key"}
    assert scopes.expand(["public_repo"]) == {"public_repo"}
    assert scopes.normalized(["user", "gist", "user:email", "gist"]) == ["user", "gist"]
    assert scopes.normalized(["read:org", "admin:org", "repo"]) == ["admin:org", "repo"]
    assert scopes.header(["user", "repo", "repo"]) == "repo, user"
    assert scopes.header([]) == ""


def test_private_repositories_need_repo_and_public_ones_accept_public_repo() -> None:
    assert scopes.can_read_repo([], private=False)
    assert not scopes.can_read_repo(["public_repo", "admin:org"], private=True)
    assert scopes.can_read_repo(["repo"], private=True)
    assert scopes.repo_write(False).accepted_header == "public_repo, repo"
    assert scopes.repo_write(True).accepted_header == "repo"
    assert scopes.repo_write(False).refusal(["public_repo"]) is None
    denied = scopes.repo_write(True).refusal(["public_repo"])
    assert denied is not None and denied.code == 404
    # Deletion: 403 when the token can see the repository, 404 when it cannot.
    assert scopes.repo_delete(False).refusal([]) == Rejection(403, scopes.NEED_DELETE_SCOPE)
    assert scopes.repo_delete(True).refusal(["repo"]) == Rejection(403, scopes.NEED_DELETE_SCOPE)
    assert scopes.repo_delete(True).refusal(["public_repo"]) == Rejection(404, "Not Found")
    assert scopes.repo_delete(True).refusal(["delete_repo"]) is None


def test_a_hidden_repository_is_judged_as_a_public_one() -> None:
    """The scopes asked for must not tell that a repository the actor cannot read exists."""
    c = world(LATEST)
    bob = c.state.user_by_login("bob")
    assert bob is not None
    hidden = parse_payload("repo.update", {"owner": "alice", "repo": "priv", "description": "x"})
    missing = parse_payload("repo.update", {"owner": "alice", "repo": "nope", "description": "x"})
    need = scopes.command_need(c.state, "repo.update", hidden, bob)
    assert need == scopes.command_need(c.state, "repo.update", missing, bob)
    assert need.accepted_header == "public_repo, repo"


# -- apply time ----------------------------------------------------------------------------

#: (token scopes, actor, kind, payload, the code under version 2) — version 1 accepts them all.
REFUSALS: list[tuple[tuple[str, ...], str, str, dict[str, Any], int]] = [
    ((), "alice", "repo.create", {"owner": "alice", "name": "n1"}, 404),
    (("public_repo",), "alice", "repo.create", {"owner": "alice", "name": "n2", "private": True}, 404),
    (("read:org",), "alice", "repo.update", {"owner": "alice", "repo": "pub", "description": "d"}, 404),
    (("public_repo",), "alice", "repo.update", {"owner": "alice", "repo": "priv", "description": "d"}, 404),
    (("public_repo",), "alice", "repo.update", {"owner": "alice", "repo": "pub", "private": True}, 404),
    (("repo",), "alice", "repo.delete", {"owner": "alice", "repo": "pub"}, 403),
    (("public_repo",), "alice", "repo.delete", {"owner": "alice", "repo": "priv"}, 404),
    (("user",), "alice", "collaborator.set", {"owner": "alice", "repo": "pub", "user": "bob"}, 404),
    (("repo",), "alice", "org.set_membership", {"org": "acme", "user": "bob", "role": "owner"}, 404),
    (("read:org",), "alice", "org.remove_member", {"org": "acme", "user": "bob"}, 404),
    (("write:org",), "alice", "team.create", {"org": "acme", "name": "Ops"}, 404),
    (("read:org",), "alice", "team.set_membership", {"org": "acme", "team_slug": "core", "user": "bob"}, 404),
    (("user",), "alice", "user.add_key", {"login": "alice", "public_key": user_public_key("alice")}, 404),
    (("repo", "admin:org", "user"), ADMIN, "user.create", {"login": "made", "email": "m@example.com"}, 403),
    (("repo",), ADMIN, "org.create", {"login": "corp", "admin": "alice"}, 403),
]


@pytest.mark.parametrize(("granted", "actor", "kind", "payload", "code"), REFUSALS)
def test_a_token_without_the_scope_is_refused_at_apply_time_from_version_2(
    granted: tuple[str, ...], actor: str, kind: str, payload: dict[str, Any], code: int
) -> None:
    v2 = world(LATEST)
    refused(run(v2, actor, as_token(v2, actor, *granted), kind, **payload), code)
    v1 = world(LEGACY)
    receipt = run(v1, actor, as_token(v1, actor, *granted), kind, **payload)
    assert receipt.ok, receipt


GRANTS: list[tuple[tuple[str, ...], str, str, dict[str, Any]]] = [
    (("public_repo",), "alice", "repo.create", {"owner": "alice", "name": "n1"}),
    (("repo",), "alice", "repo.create", {"owner": "alice", "name": "n2", "private": True}),
    (("public_repo",), "alice", "repo.update", {"owner": "alice", "repo": "pub", "description": "d"}),
    (("repo",), "alice", "repo.update", {"owner": "alice", "repo": "priv", "description": "d"}),
    (("delete_repo",), "alice", "repo.delete", {"owner": "alice", "repo": "priv"}),
    (("public_repo",), "alice", "collaborator.set", {"owner": "alice", "repo": "pub", "user": "bob"}),
    (("write:org",), "alice", "org.set_membership", {"org": "acme", "user": "bob", "role": "owner"}),
    (("admin:org",), "alice", "team.create", {"org": "acme", "name": "Ops"}),
    (("repo",), "alice", "team.set_membership", {"org": "acme", "team_slug": "core", "user": "bob"}),
    (
        ("write:public_key",),
        "alice",
        "user.add_key",
        {"login": "alice", "public_key": user_public_key("alice")},
    ),
    (("site_admin",), ADMIN, "user.create", {"login": "made", "email": "m@example.com"}),
]


@pytest.mark.parametrize(("granted", "actor", "kind", "payload"), GRANTS)
def test_a_token_with_the_scope_or_one_including_it_is_accepted(
    granted: tuple[str, ...], actor: str, kind: str, payload: dict[str, Any]
) -> None:
    c = world(LATEST)
    receipt = run(c, actor, as_token(c, actor, *granted), kind, **payload)
    assert receipt.ok, receipt


def test_scopes_never_add_to_the_users_permissions() -> None:
    c = world(LATEST)
    token = as_token(c, "bob", "repo", "delete_repo", "admin:org", "site_admin")
    refused(run(c, "bob", token, "repo.update", owner="alice", repo="priv", description="d"), 404)
    refused(run(c, "bob", token, "repo.delete", owner="alice", repo="pub"), 403)
    refused(run(c, "bob", token, "team.create", org="acme", name="Ops"), 403)
    refused(run(c, "bob", token, "user.create", login="made", email="m@example.com"), 403)


def test_pushes_need_repo_or_public_repo_for_a_public_repository() -> None:
    c = world(LATEST)
    main = {"ref": "refs/heads/main", "old": ZERO_SHA, "new": sha("a")}
    none = as_token(c, "alice", "read:org")
    refused(run(c, "alice", none, "git.push_refs", owner="alice", repo="pub", updates=[main]), 403, "denied")
    public = as_token(c, "alice", "public_repo")
    refused(run(c, "alice", public, "git.push_refs", owner="alice", repo="priv", updates=[main]), 404)
    assert run(c, "alice", public, "git.push_refs", owner="alice", repo="pub", updates=[main]).ok
    full = as_token(c, "alice", "repo")
    assert run(c, "alice", full, "git.push_refs", owner="alice", repo="priv", updates=[main]).ok


def test_a_transaction_the_user_signed_acts_with_full_authority() -> None:
    c = world(LATEST)
    c.ok("alice", "user.add_key", login="alice", public_key=user_public_key("alice"), title="laptop")
    receipt = c.run(c.user_tx("alice", "repo.delete", {"owner": "alice", "repo": "priv"}))
    assert receipt.ok, receipt
    assert c.state.repo_by_name("alice", "priv") is None


def test_the_scope_is_judged_against_the_repository_at_that_height() -> None:
    """A public_repo token may change a public repository until, earlier in the same block,
    the repository becomes private: then the same transaction is refused."""
    c = world(LATEST)
    public = as_token(c, "alice", "public_repo")
    result = c.block(
        c.node_tx("alice", "repo.update", {"owner": "alice", "repo": "pub", "private": True}),
        c.node_tx(
            "alice", "repo.update", {"owner": "alice", "repo": "pub", "description": "d"}, token_id=public
        ),
    )
    assert result.receipts[0].ok
    refused(result.receipts[1], 404)


# -- who sees a transaction ----------------------------------------------------------------


def test_a_token_sees_no_more_transactions_than_its_scopes_let_it_read() -> None:
    c = world(LATEST)
    ids = {login: c.state.user_by_login(login) for login in ("alice", "bob", ADMIN)}
    alice, bob, admin = (u.user_id for u in ids.values() if u is not None)

    def what(actor: str, kind: str, **payload: Any) -> Touched:
        raw = c.node_tx(actor, kind, payload)
        receipt = c.run(raw)
        assert receipt.ok, receipt
        return touched_by_bytes(raw, receipt, receipt.height, rules=LATEST)

    private = what("alice", "repo.update", owner="alice", repo="priv", description="x")
    assert can_see(c.state, alice, private)  # no token: the user's own view
    assert can_see(c.state, alice, private, scopes=["repo"])
    assert not can_see(c.state, alice, private, scopes=["public_repo", "admin:org"])  # even her own
    assert can_see(c.state, admin, private, scopes=["site_admin", "repo"])
    assert not can_see(c.state, admin, private, scopes=["site_admin"])

    public = what("alice", "repo.update", owner="alice", repo="pub", description="x")
    assert can_see(c.state, bob, public, scopes=[]) and can_see(c.state, None, public)

    membership = what("alice", "org.set_membership", org="acme", user="bob", role="member")
    assert can_see(c.state, bob, membership, scopes=["read:org"])
    assert can_see(c.state, bob, membership, scopes=["admin:org"])
    assert not can_see(c.state, bob, membership, scopes=["repo", "user"])

    admin_everything = what(ADMIN, "user.create", login="newbie", email="n@example.com")
    assert can_see(c.state, admin, admin_everything, scopes=["site_admin"])
    assert not can_see(c.state, bob, admin_everything, scopes=["site_admin", "user"])
