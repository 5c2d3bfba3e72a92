"""Shared helpers for the ledger tests: a tiny chain driver with validators, tokens and user keys.

Named test_* so it may live among the ledger tests; its own tests check the driver itself.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nacl.signing import SigningKey

from commands.envelope import sign_as_node, sign_as_user
from commands.ledger import BlockContext, BlockResult, GenesisAdmin, Receipt, execute_block, genesis_state
from domain.ids import key_id_for
from domain.rules import LATEST, Rules
from domain.state import LedgerState

CHAIN_ID = "stele-test"
GENESIS_MS = 1_700_000_000_000
VALIDATOR_SEEDS = tuple(bytes([i + 1]) * 32 for i in range(4))
VALIDATORS = tuple(bytes(SigningKey(seed).verify_key) for seed in VALIDATOR_SEEDS)
ADMIN = "admin"
#: The scopes of every token the driver issues (and the genesis admin's): enough for every
#: command, so tests of permissions are not tests of scopes. Scope tests issue their own.
FULL_SCOPES = ("admin:org", "admin:public_key", "delete_repo", "repo", "site_admin", "user")


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def user_seed(login: str) -> bytes:
    return hashlib.sha256(b"user-seed/" + login.lower().encode()).digest()


def user_public_key(login: str) -> str:
    return bytes(SigningKey(user_seed(login)).verify_key).hex()


def user_key_id(login: str) -> str:
    return key_id_for(bytes.fromhex(user_public_key(login)))


def genesis() -> BlockResult:
    admin = GenesisAdmin(
        ADMIN, "admin@example.com", token_hash("admin-secret"), token_id="tok-admin", scopes=FULL_SCOPES
    )
    return genesis_state(CHAIN_ID, admin, GENESIS_MS, VALIDATORS)


class Chain:
    """Executes one block per call on a base state, merging each result like a node would."""

    def __init__(self, rules: Rules = LATEST) -> None:
        self.rules = rules
        self.state: LedgerState = genesis().state
        self.tokens: dict[str, str] = {ADMIN: "tok-admin"}
        self.nonce = 0
        self.results: list[BlockResult] = []

    def next_nonce(self) -> str:
        self.nonce += 1
        return f"{self.nonce:032x}"

    def ctx(self, height: int | None = None) -> BlockContext:
        h = self.state.height + 1 if height is None else height
        return BlockContext(CHAIN_ID, h, GENESIS_MS + 1000 * h, VALIDATORS, rules=self.rules)

    def node_tx(
        self,
        actor: str,
        kind: str,
        payload: dict[str, Any],
        *,
        token_id: str | None = None,
        node: int = 0,
        chain_id: str = CHAIN_ID,
        seed: bytes | None = None,
    ) -> bytes:
        tx = sign_as_node(
            chain_id=chain_id,
            kind=kind,
            payload=payload,
            actor=actor,
            nonce=self.next_nonce(),
            seed=VALIDATOR_SEEDS[node] if seed is None else seed,
            node_index=node,
            token_id=self.tokens.get(actor, "no-token") if token_id is None else token_id,
        )
        return tx.encode()

    def user_tx(
        self,
        actor: str,
        kind: str,
        payload: dict[str, Any],
        *,
        seed: bytes | None = None,
        key_id: str | None = None,
    ) -> bytes:
        tx = sign_as_user(
            chain_id=CHAIN_ID,
            kind=kind,
            payload=payload,
            actor=actor,
            nonce=self.next_nonce(),
            submitted_by=1,
            seed=user_seed(actor) if seed is None else seed,
            key_id=user_key_id(actor) if key_id is None else key_id,
        )
        return tx.encode()

    def issue_token(
        self, login: str, token_id: str, scopes: tuple[str, ...], *, secret: str | None = None
    ) -> None:
        """A token for `login` with these scopes (the admin issues it); attest with `token_id=`."""
        digest = token_hash(f"{login}/{token_id}" if secret is None else secret)
        self.ok(ADMIN, "token.issue", login=login, token_id=token_id, token_hash=digest, scopes=list(scopes))

    def block(self, *txs: bytes) -> BlockResult:
        result = execute_block(self.state, self.state.app_hash, self.ctx(), list(txs))
        result.state.merge_into_parent()
        self.results.append(result)
        return result

    def run(self, tx: bytes) -> Receipt:
        return self.block(tx).receipts[0]

    def do(self, actor: str, kind: str, **payload: Any) -> Receipt:
        return self.run(self.node_tx(actor, kind, payload))

    def ok(self, actor: str, kind: str, **payload: Any) -> Receipt:
        receipt = self.do(actor, kind, **payload)
        assert receipt.ok, receipt
        return receipt

    def add_user(self, login: str, *, with_key: bool = False) -> str:
        user_id = self.ok(ADMIN, "user.create", login=login, email=f"{login}@example.com").result["user_id"]
        token_id = f"tok-{login}"
        self.issue_token(login, token_id, FULL_SCOPES, secret=login)
        self.tokens[login] = token_id
        if with_key:
            self.ok(login, "user.add_key", login=login, public_key=user_public_key(login), title="laptop")
        assert isinstance(user_id, str)
        return user_id


def test_genesis_is_deterministic_and_bootstraps_a_site_admin() -> None:
    a, b = genesis(), genesis()
    assert a.app_hash == b.app_hash and len(a.app_hash) == 32
    assert [e.model_dump() for e in a.events] == [e.model_dump() for e in b.events]
    admin = a.state.user_by_login("ADMIN")
    assert admin is not None and admin.site_admin
    token = a.state.token_by_hash(token_hash("admin-secret"))
    assert token is not None and token.user_id == admin.user_id and token.token_id == "tok-admin"
    assert a.state.height == 0 and a.state.chain_id == CHAIN_ID and a.state.app_hash == a.app_hash


def test_chain_driver_creates_users_with_tokens_and_keys() -> None:
    chain = Chain()
    alice = chain.add_user("alice", with_key=True)
    assert chain.state.user(alice) is not None
    assert [k.key_id for k in chain.state.user_keys(alice)] == [user_key_id("alice")]
    receipt = chain.run(chain.user_tx("alice", "repo.create", {"owner": "alice", "name": "r"}))
    assert receipt.ok and chain.state.repo_by_name("ALICE", "R") is not None
    assert chain.state.depth == 1  # every block was merged into the base
