"""The node's ledger host: speculative app hashes, applying final blocks, replays and divergence."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from adapters.consensus_host import NodeHalt
from adapters.ledger import LedgerDivergence, LedgerHost
from commands.envelope import sign_as_node
from consensus.genesis import Genesis, ValidatorInfo
from consensus.interface import Finalized
from consensus.types import Block, Certificate, VoteKind, genesis_block

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


class Ports:
    """What a node would give the ledger, recorded: unfinal blocks, pack requests, evictions."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, Block] = {}
        self.wanted: list[str] = []
        self.evicted: list[bytes] = []
        self.halts: list[NodeHalt] = []
        #: Called with a halt instead of raising it (for a ledger running on its worker thread).
        self.on_halt: Callable[[NodeHalt], object] | None = None

    def block(self, block_hash: bytes) -> Block | None:
        return self.blocks.get(block_hash)

    def want_pack(self, digest: str) -> None:
        self.wanted.append(digest)

    def evict_tx(self, raw: bytes) -> None:
        self.evicted.append(raw)

    def app_ready(self) -> None:
        pass

    def halt(self, halt: NodeHalt) -> None:
        self.halts.append(halt)
        if self.on_halt is None:
            raise halt
        self.on_halt(halt)


def _child(ledger: LedgerHost, parent: Block, txs: tuple[bytes, ...]) -> Block:
    app_hash = ledger.app_hash_for_child(parent)
    assert app_hash is not None
    return Block(parent.height + 1, parent.view + 1, parent.hash, parent.timestamp_ms + 10, 0, app_hash, txs)


def test_speculative_chain_then_finalize_and_replayed_tx(tmp_path: Path) -> None:
    g = _genesis()
    ports = Ports()
    blocks = ports.blocks
    ledger = LedgerHost(genesis=g, data_dir=tmp_path, ports=ports)
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
    ports = Ports()
    blocks = ports.blocks
    ledger = LedgerHost(genesis=g, data_dir=tmp_path, ports=ports)
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    b1 = _child(ledger, root, (b"garbage", b"garbage"))
    blocks[b1.hash] = b1
    b2 = _child(ledger, b1, (b"garbage",))
    assert [r.code for r in ledger.apply_finalized(b1)] == [400, 409]
    assert [r.code for r in ledger.apply_finalized(b2)] == [409]
    first = ledger.receipt(hashlib.sha256(b"garbage").hexdigest())
    assert first is not None and first.code == 400 and first.height == 1
    ledger.close()


# -- data availability: pushes wait for their packs --------------------------------------------


def _pack_with_one_commit(store_root: Path) -> tuple[bytes, str]:
    """A real pack (blob, tree, commit) quarantined in a peer's store: (pack bytes, commit sha)."""
    from io import BytesIO

    from dulwich.object_format import SHA1
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.pack import write_pack_objects

    from adapters.git import GitStore, receive_pack

    blob = Blob.from_string(b"hello\n")
    tree = Tree()
    tree.add(b"hello.txt", 0o100644, blob.id)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = b"T <t@example.com>"
    commit.author_time = commit.commit_time = 1_700_000_000
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = b"one\n"
    out = BytesIO()
    write_pack_objects(out, [(o, None) for o in (blob, tree, commit)], object_format=SHA1)
    peer = GitStore(store_root)
    received = receive_pack(peer, "any", out.getvalue())
    data = peer.pack_bytes_for(received.digest)
    assert data is not None
    return data, commit.id.decode()


def test_a_push_waits_for_its_pack_before_it_is_voted_or_applied(tmp_path: Path) -> None:
    from adapters.git import GitStore, accept_peer_pack

    g = _genesis()
    git = GitStore(tmp_path / "git")
    ports = Ports()
    ledger = LedgerHost(genesis=g, data_dir=tmp_path / "node", git=git, ports=ports)
    wanted, evicted, blocks = ports.wanted, ports.evicted, ports.blocks
    root = genesis_block(g.chain_id, g.genesis_time_ms)
    b1 = _child(ledger, root, (_tx("repo.create", {"owner": "admin", "name": "r"}, 1),))
    blocks[b1.hash] = b1
    assert ledger.apply_finalized(b1)[0].ok
    pack, sha = _pack_with_one_commit(tmp_path / "peer")
    digest = hashlib.sha256(pack).hexdigest()
    update = {"ref": "refs/heads/main", "old": "0" * 40, "new": sha, "force": False}
    push = _tx(
        "git.push_refs", {"owner": "admin", "repo": "r", "pack_digest": digest, "updates": [update]}, 2
    )
    b2 = _child(ledger, b1, (push,))
    blocks[b2.hash] = b2
    # Not held: no vote (the block is not available), not proposed, and the pack is asked for.
    assert not ledger.block_available(b2)
    assert not ledger.tx_available(push)
    assert ledger.app_hash_for_child(b2) is None
    assert wanted and set(wanted) == {digest}
    # Finalized anyway (by a quorum that held it): it queues instead of being decided without it.
    ledger.on_finalized(Finalized(b2, _dummy_cert()))
    assert ledger.height == 1 and ledger.waiting_for_packs
    accept_peer_pack(git, digest, pack)
    ledger.pack_ready(digest)
    assert ledger.height == 2 and not ledger.waiting_for_packs
    receipt = ledger.receipt(hashlib.sha256(push).hexdigest())
    assert receipt is not None and receipt.ok, receipt
    repo = ledger.state.repo_by_name("admin", "r")
    assert repo is not None
    assert ledger.state.repo_packs(repo.repo_id) == (digest,)
    assert git.refs(repo.repo_id) == {"refs/heads/main": sha}  # carried out on the bare repository
    assert git.head(repo.repo_id) == "refs/heads/main"
    assert evicted == []
    ledger.close()


def test_a_push_whose_pack_never_comes_is_evicted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.git import GitStore

    ports = Ports()
    ledger = LedgerHost(
        genesis=_genesis(), data_dir=tmp_path / "node", git=GitStore(tmp_path / "git"), ports=ports
    )
    evicted = ports.evicted
    update = {"ref": "refs/heads/main", "old": "0" * 40, "new": "1" * 40, "force": False}
    push = _tx(
        "git.push_refs", {"owner": "admin", "repo": "r", "pack_digest": "ab" * 32, "updates": [update]}, 1
    )
    assert not ledger.tx_available(push) and evicted == []
    monkeypatch.setattr(ledger.availability, "_pack_wait_s", 0.0)
    assert not ledger.tx_available(push)
    assert evicted == [push]
    other = _tx("user.create", {"login": "octo", "email": "octo@example.com"}, 2)
    assert ledger.tx_available(other)  # only pushes carry packs
    ledger.close()


def _dummy_cert() -> Certificate:
    """LedgerHost ignores the proof; consensus verified it before handing the block over."""
    return Certificate(VoteKind.FINALIZE, 1, b"\x00" * 32, ())
