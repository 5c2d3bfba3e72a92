"""A fault of one node never becomes an outcome: only deterministic rejections are receipts.

- A corrupt copy of a pack (a flipped byte on this node's disk) makes the node drop that
  copy and fetch the pack again, then decide like everyone else; never a 500 receipt.
- A handler that raises is not an outcome (protocol version 2): the node stops, naming the
  transaction; version 1 blocks still replay to their old 500 receipts.
- Applying a block that waited for its pack and then fails stops the node with the true
  cause, and the block is still the next to apply (not a later, misleading error).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from dulwich.object_format import SHA1
from dulwich.objects import ObjectID
from dulwich.pack import Pack
from nacl.signing import SigningKey

from adapters.consensus_host import NodeHalt
from adapters.git import GitStore, accept_peer_pack
from adapters.ledger import LedgerHost
from commands import handlers, payloads
from commands.decision import HandlerContext
from commands.ledger import HandlerFault
from consensus.genesis import Genesis, ValidatorInfo
from consensus.interface import Finalized
from consensus.types import Block, genesis_block
from domain.rules import ChainRules
from domain.state import LedgerState
from tests.test_ledger_host import SEED, TOKEN, Ports, _child, _dummy_cert, _pack_with_one_commit, _tx


def _genesis(protocol: bool = True) -> Genesis:
    pub = bytes(SigningKey(SEED).verify_key)
    extra: dict[str, object] = {
        "admin": {
            "login": "admin",
            "email": "admin@example.com",
            "token_hash": hashlib.sha256(TOKEN.encode()).hexdigest(),
            "token_id": "tok-admin",
            "scopes": ["admin:org", "delete_repo", "repo", "site_admin", "user"],
        }
    }
    if protocol:
        extra["protocol"] = ChainRules.latest().to_json()
    return Genesis("ledger-test", 1_000, (ValidatorInfo("v0", pub, "127.0.0.1", 7000, 8000),), extra)


def _push_block(ledger: LedgerHost, ports: Ports, parent: Block, digest: str, sha: str) -> Block:
    update = {"ref": "refs/heads/main", "old": "0" * 40, "new": sha, "force": False}
    push = _tx(
        "git.push_refs", {"owner": "admin", "repo": "r", "pack_digest": digest, "updates": [update]}, 2
    )
    block = _child(ledger, parent, (push,))
    ports.blocks[block.hash] = block
    return block


def _with_repo(tmp_path: Path) -> tuple[LedgerHost, Ports, GitStore, Block]:
    g = _genesis()
    git = GitStore(tmp_path / "git")
    ports = Ports()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path / "node", git=git, ports=ports)
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    b1 = _child(ledger, root, (_tx("repo.create", {"owner": "admin", "name": "r"}, 1),))
    ports.blocks[b1.hash] = b1
    assert ledger.apply_finalized(b1)[0].ok
    return ledger, ports, git, b1


def test_a_corrupt_local_pack_is_fetched_again_never_a_receipt(tmp_path: Path) -> None:
    ledger, ports, git, b1 = _with_repo(tmp_path)
    pack, sha = _pack_with_one_commit(tmp_path / "peer")
    digest = hashlib.sha256(pack).hexdigest()
    accept_peer_pack(git, digest, pack)
    # This node's copy goes bad after it was checked: a flipped byte inside the commit.
    with Pack(str(git.pack_base(digest)), object_format=SHA1) as copy:
        offset = copy.index.object_offset(ObjectID(sha.encode()))
    path = git.pack_base(digest).with_suffix(".pack")
    data = bytearray(path.read_bytes())
    data[offset + 6] ^= 0xFF
    path.write_bytes(bytes(data))
    b2 = _push_block(ledger, ports, b1, digest, sha)
    ledger.on_finalized(Finalized(b2, _dummy_cert()))
    assert ledger.height == 1, "the block must wait, not be decided from a bad copy"
    assert ledger.receipt(hashlib.sha256(b2.txs[0]).hexdigest()) is None
    assert ports.wanted == [digest] and not git.has_pack(digest)  # dropped and asked for
    assert ledger.stats["packs_refetched"] == 1
    accept_peer_pack(git, digest, pack)  # the sound copy arrives from a peer
    ledger.pack_ready(digest)
    receipt = ledger.receipt(hashlib.sha256(b2.txs[0]).hexdigest())
    assert ledger.height == 2 and receipt is not None and receipt.ok, receipt
    ledger.close()


def test_a_handler_that_raises_stops_the_node_without_a_receipt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(state: LedgerState, cmd: object, ctx: HandlerContext) -> list[object]:
        raise MemoryError("out of memory on this node only")

    monkeypatch.setitem(handlers.COMMANDS, "org.create", handlers.Command(payloads.OrgCreate, broken))  # type: ignore[arg-type]
    for protocol, expect_receipt in ((True, False), (False, True)):
        g = _genesis(protocol)
        ports = Ports()
        ledger = LedgerHost(genesis=g, data_dir=tmp_path / f"node-{protocol}", ports=ports)
        root = genesis_block(g.chain_id, g.genesis_time_ms)
        block = _child(ledger, root, (_tx("org.create", {"login": "acme", "admin": "admin"}, 7),))
        if expect_receipt:  # version 1: the old 500 receipt, so old chains replay the same
            assert [(r.code, r.message) for r in ledger.apply_finalized(block)] == [
                (500, "internal error in handler: MemoryError")
            ]
        else:
            with pytest.raises(HandlerFault, match="MemoryError: out of memory on this node only"):
                ledger.apply_finalized(block)
            assert ledger.height == 0 and ledger.receipt(hashlib.sha256(block.txs[0]).hexdigest()) is None
        ledger.close()


def test_an_apply_failure_after_a_pack_arrives_halts_with_the_true_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, ports, git, b1 = _with_repo(tmp_path)
    pack, sha = _pack_with_one_commit(tmp_path / "peer")
    digest = hashlib.sha256(pack).hexdigest()
    update = {"ref": "refs/heads/main", "old": "0" * 40, "new": sha, "force": False}
    push = _tx(
        "git.push_refs", {"owner": "admin", "repo": "r", "pack_digest": digest, "updates": [update]}, 2
    )
    b2 = Block(2, 2, b1.hash, b1.timestamp_ms + 10, 0, ledger.state.app_hash, (push,))

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ledger.application.events, "append_block", disk_full)

    async def run() -> NodeHalt:
        halted: asyncio.Future[NodeHalt] = asyncio.get_running_loop().create_future()
        ports.on_halt = halted.set_result
        ledger.start(asyncio.get_running_loop())
        ledger.on_finalized(Finalized(b2, _dummy_cert()))  # waits for its pack
        accept_peer_pack(git, digest, pack)
        ledger.pack_ready(digest)
        return await asyncio.wait_for(halted, 30)

    halt = asyncio.run(run())
    assert "No space left on device" in str(halt), halt
    assert ledger.height == 1 and ledger.waiting_for_packs is False
    assert ledger._queue and ledger._queue[0].height == 2  # still the next block to apply
    ledger.close()
