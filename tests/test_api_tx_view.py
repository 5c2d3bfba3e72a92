"""Transactions an honest node never admits (undecodable bytes, replays), as the routes show them.

No route lets such bytes into a block (the mempool refuses them), but a Byzantine leader
may propose them; here a real `LedgerHost` applies such a block and the helpers the
block and receipt routes use render it.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from adapters.ledger import LedgerHost
from api.tx_view import block_transactions, raw_visible
from commands.envelope import sign_as_node
from consensus.genesis import Genesis, ValidatorInfo
from consensus.types import Block, genesis_block

SEED = hashlib.sha256(b"tx-view-test").digest()


def _genesis() -> Genesis:
    pub = bytes(SigningKey(SEED).verify_key)
    admin = {"login": "admin", "email": "admin@example.com", "token_hash": "ab" * 32, "token_id": "tok-admin"}
    return Genesis("view-test", 1_000, (ValidatorInfo("v0", pub, "127.0.0.1", 7000, 8000),), {"admin": admin})


def _create_user(login: str) -> bytes:
    return sign_as_node(
        chain_id="view-test",
        kind="user.create",
        payload={"login": login, "email": f"{login}@example.com"},
        actor="admin",
        nonce="1" * 32,
        seed=SEED,
        node_index=0,
        token_id="tok-admin",
    ).encode()


async def _render(ledger: LedgerHost, viewer: str | None, txs: tuple[bytes, ...]) -> list[dict[str, Any]]:
    return await block_transactions(ledger, viewer, 1, txs)


def test_undecodable_bytes_and_replays(tmp_path: Path) -> None:
    g = _genesis()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path)
    try:
        root = genesis_block(g.chain_id, g.genesis_time_ms)
        create = _create_user("octo")
        txs = (b"\xffnot a transaction", create, create)
        app_hash = ledger.app_hash_for_child(root)
        assert app_hash is not None
        block = Block(1, 1, root.hash, root.timestamp_ms + 10, 0, app_hash, txs)
        assert [r.code for r in ledger.apply_finalized(block)] == [400, 200, 409]
        admin = ledger.state.user_by_login("admin")
        octo = ledger.state.user_by_login("octo")
        assert admin is not None and octo is not None

        garbage, created, replay = asyncio.run(_render(ledger, admin.user_id, txs))
        assert garbage["kind"] is None and garbage["payload"] is None and garbage["receipt"]["code"] == 400
        assert created["kind"] == "user.create" and created["receipt"]["ok"] is True
        # The replay's own 409 is not stored under the id; it shows no receipt rather than the first's.
        assert replay["kind"] == "user.create" and replay["index"] == 2 and replay["receipt"] is None

        ids = [hashlib.sha256(t).hexdigest() for t in txs]
        for viewer in (octo.user_id, None):
            shown = asyncio.run(_render(ledger, viewer, txs))
            assert shown[0] == {"tx_id": ids[0], "redacted": True}
            # octo may see her own creation (her email is in it), anonymous may not.
            assert ("redacted" in shown[1]) == (viewer is None) == ("redacted" in shown[2])

        receipt = ledger.receipt(ids[0])
        assert receipt is not None
        assert raw_visible(ledger, admin.user_id, txs[0], receipt)
        assert not raw_visible(ledger, octo.user_id, txs[0], receipt)
        assert not raw_visible(ledger, None, txs[0], receipt)
        assert not raw_visible(ledger, octo.user_id, None, receipt)  # bytes this node cannot find
    finally:
        ledger.close()
