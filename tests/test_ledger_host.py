"""The node's ledger host: speculative app hashes, applying final blocks, replays and divergence."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from adapters.consensus_host import NodeHalt
from adapters.ledger_host import LedgerDivergence, LedgerHost
from commands.envelope import sign_as_node
from consensus.genesis import Genesis, ValidatorInfo
from consensus.types import Block, genesis_block

TOKEN = "stl_test-admin-token"
SEED = hashlib.sha256(b"ledger-host-test").digest()


def _genesis() -> Genesis:
    pub = bytes(SigningKey(SEED).verify_key)
    admin = {
        "login": "admin",
        "email": "admin@example.com",
        "token_hash": hashlib.sha256(TOKEN.encode()).hexdigest(),
        "token_id": "tok-admin",
    }
    return Genesis(
        "ledger-test", 1_000, (ValidatorInfo("v0", pub, "127.0.0.1", 7000, 8000),), {"admin": admin}
    )


def _tx(kind: str, payload: dict[str, object], nonce: int) -> bytes:
    return sign_as_node(
        chain_id="ledger-test",
        kind=kind,
        payload=payload,
        actor="admin",
        nonce=f"{nonce:032x}",
        seed=SEED,
        node_index=0,
        token_id="tok-admin",
    ).encode()


def _child(ledger: LedgerHost, parent: Block, txs: tuple[bytes, ...]) -> Block:
    app_hash = ledger.app_hash_for_child(parent)
    assert app_hash is not None
    return Block(parent.height + 1, parent.view + 1, parent.hash, parent.timestamp_ms + 10, 0, app_hash, txs)


def test_speculative_chain_then_finalize_and_replayed_tx(tmp_path: Path) -> None:
    g = _genesis()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path)
    blocks: dict[bytes, Block] = {}
    ledger.set_block_lookup(blocks.get)
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    create = _tx("user.create", {"login": "octo", "email": "octo@example.com"}, 1)
    b1 = _child(ledger, root, (create,))
    blocks[b1.hash] = b1
    # Block 2 repeats the same transaction bytes (a replay, e.g. from a Byzantine leader).
    b2 = _child(ledger, b1, (create, _tx("org.create", {"login": "acme", "admin": "octo"}, 2)))
    blocks[b2.hash] = b2
    assert ledger.apply_finalized(b1)[0].ok
    receipts = ledger.apply_finalized(b2)
    assert [r.code for r in receipts] == [409, 200]
    first = ledger.receipt(hashlib.sha256(create).hexdigest())
    assert first is not None and first.ok and first.height == 1
    assert ledger.state.user_by_login("octo") is not None
    assert ledger.read.get_org("acme") is not None
    ledger.close()


def test_restart_replays_from_the_block_store_idempotently(tmp_path: Path) -> None:
    g = _genesis()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path)
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    b1 = _child(ledger, root, (_tx("user.create", {"login": "octo", "email": "o@example.com"}, 1),))
    ledger.apply_finalized(b1)
    app_hash = ledger.state.app_hash
    ledger.close()

    class Store:
        def last_height(self) -> int:
            return 1

        def get(self, height: int):
            from consensus.interface import Finalized
            from consensus.types import Certificate, VoteKind

            return Finalized(b1, Certificate(VoteKind.FINALIZE, 1, b1.hash, ()))

    again = LedgerHost(genesis=g, data_dir=tmp_path)
    again.recover(Store())
    assert again.height == 1 and again.state.app_hash == app_hash
    assert again.apply_finalized(b1) == []  # already applied: a no-op
    again.close()


def test_a_block_committing_to_another_state_halts_the_node(tmp_path: Path) -> None:
    g = _genesis()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path)
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    bad = Block(1, 1, root.hash, root.timestamp_ms + 1, 0, b"\x13" * 32, ())
    with pytest.raises(LedgerDivergence) as info:
        ledger.apply_finalized(bad)
    assert isinstance(info.value, NodeHalt)
    assert "app hash mismatch at height 1" in str(info.value)
    assert ledger.height == 0
    ledger.close()


def test_replayed_garbage_gets_a_duplicate_receipt_not_a_crash(tmp_path: Path) -> None:
    g = _genesis()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path)
    blocks: dict[bytes, Block] = {}
    ledger.set_block_lookup(blocks.get)
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    b1 = _child(ledger, root, (b"garbage", b"garbage"))
    blocks[b1.hash] = b1
    b2 = _child(ledger, b1, (b"garbage",))
    assert [r.code for r in ledger.apply_finalized(b1)] == [400, 409]
    assert [r.code for r in ledger.apply_finalized(b2)] == [409]
    first = ledger.receipt(hashlib.sha256(b"garbage").hexdigest())
    assert first is not None and first.code == 400 and first.height == 1
    ledger.close()
