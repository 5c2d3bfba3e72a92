"""A recorded history of every command kind, replayed in another interpreter process.

`record()` runs a fixed history through the ledger (users with unicode-bearing teams,
orgs, repositories, collaborators, branch protection, pushes with per-ref refusals) and
returns its blocks. `python -m tests.replay_history BLOCKS.json` re-executes those blocks
from genesis and prints each block's app hash, receipts and events as hex, so a test can
run it under other hash seeds and compare bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from commands.git_view import MemoryGitView
from commands.ledger import BlockContext, execute_block
from domain.canonical import canonical_json
from domain.events import ZERO_SHA
from domain.rules import LATEST
from tests.test_ledger_support import CHAIN_ID, GENESIS_MS, VALIDATORS, Chain, genesis


def _sha(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def _seed(view: MemoryGitView, repo_id: str) -> None:
    """The same commit graph in every process: a <- b, a <- d."""
    view.add_commit(repo_id, _sha("a"))
    view.add_commit(repo_id, _sha("b"), [_sha("a")])
    view.add_commit(repo_id, _sha("d"), [_sha("a")])


def _up(ref: str, old: str, new: str) -> dict[str, str]:
    return {"ref": ref, "old": old, "new": new}


class _Recorder(Chain):
    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[list[bytes]] = []
        self.git = MemoryGitView()

    def ctx(self, height: int | None = None) -> BlockContext:
        h = self.state.height + 1 if height is None else height
        return BlockContext(CHAIN_ID, h, GENESIS_MS + 1000 * h, VALIDATORS, self.git, LATEST)

    def run(self, raw: bytes) -> Any:
        self.blocks.append([raw])
        return super().run(raw)


def record() -> list[list[bytes]]:
    c = _Recorder()
    for login in ("alice", "bob", "carol"):
        c.add_user(login)
    c.do("alice", "org.create", login="acme", admin="alice")
    c.do("alice", "org.set_membership", org="acme", user="bob", role="member")
    for name in ("core \U0001fae8", "Δelta team", "ops\u200b", " spaced", "Kelvin \u212a", "x" * 256):
        c.do("alice", "team.create", org="acme", name=name, privacy="closed")
    c.do("alice", "team.set_membership", org="acme", team_slug="core", user="bob", role="maintainer")
    c.do("alice", "repo.create", owner="acme", name="tool", private=True)
    c.do("alice", "repo.create", owner="alice", name="pub")
    c.do("alice", "collaborator.set", owner="alice", repo="pub", user="carol", permission="write")
    c.do(
        "alice",
        "team.set_repo_permission",
        org="acme",
        team_slug="core",
        owner="acme",
        repo="tool",
        permission="push",
    )
    c.do("admin", "user.create", login="dora", email="dora@exämple.com")
    c.do("admin", "user.create", login="eve", email="eve\u3000x@example.com")
    repo = c.state.repo_by_name("alice", "pub")
    assert repo is not None
    _seed(c.git, repo.repo_id)
    z, a, b, d = ZERO_SHA, _sha("a"), _sha("b"), _sha("d")
    c.do(
        "alice",
        "git.push_refs",
        owner="alice",
        repo="pub",
        updates=[{"ref": "refs/heads/main", "old": z, "new": a}],
    )
    c.do("alice", "repo.set_branch_protection", owner="alice", repo="pub", branch="main")
    c.do(
        "carol",
        "git.push_refs",
        owner="alice",
        repo="pub",
        updates=[
            {"ref": "refs/heads/main", "old": a, "new": b},
            {"ref": "refs/heads/main/x", "old": z, "new": a},
            {"ref": "refs/heads/ünïcode", "old": z, "new": d},
            {"ref": "refs/heads/bad..name", "old": z, "new": d},
        ],
    )
    c.do(
        "alice",
        "git.push_refs",
        owner="alice",
        repo="pub",
        updates=[{"ref": "refs/heads/main", "old": b, "new": z}],
    )
    c.do("alice", "repo.update", owner="alice", repo="pub", default_branch="ünïcode")
    return c.blocks


def replay(blocks: list[list[bytes]], repo_seed: bool = True) -> list[dict[str, Any]]:
    """Execute `blocks` from genesis; each block's app hash, receipts and events as hex."""
    state = genesis().state
    view = MemoryGitView()
    out: list[dict[str, Any]] = []
    for txs in blocks:
        height = state.height + 1
        pub = state.repo_by_name("alice", "pub")
        if pub is not None and repo_seed:
            _seed(view, pub.repo_id)
        ctx = BlockContext(CHAIN_ID, height, GENESIS_MS + 1000 * height, VALIDATORS, view, LATEST)
        result = execute_block(state, state.app_hash, ctx, txs)
        result.state.merge_into_parent()
        out.append(
            {
                "app_hash": result.app_hash.hex(),
                "receipts": [canonical_json(r.to_json()).hex() for r in result.receipts],
                "events": [canonical_json(e.model_dump()).hex() for e in result.events],
            }
        )
    return out


def main(path: str) -> None:
    blocks = [[bytes.fromhex(tx) for tx in block] for block in json.loads(Path(path).read_text())]
    json.dump(replay(blocks), sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
