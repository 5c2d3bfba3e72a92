"""A data dir that the first wave's code left halted for good comes back, and its chain goes on.

`tests/fixtures/poisoned-v1.tar.gz` was produced by commit 5e2b449 (see
`tests/fixtures/poisoned-v1.md`): a one-validator chain whose block 10 holds four pushes
of ref names git cannot store as files side by side, or at all (issue 8's cases A-D).
That code halted on applying block 10, and again at every restart. The chain runs protocol
version 1 (its genesis has no `protocol` entry), so replay must give the very same
receipts, which accepted those refs; the node now stores them (in `packed-refs`) instead
of halting, and new blocks are finalized on top.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api_node import ApiNode, expect, free_port, run_node

FIXTURE = Path(__file__).parent / "fixtures" / "poisoned-v1.tar.gz"
REPO_ID = "2b535f57-1035-55b8-b295-9019565ab653"
MAIN = "e1b41b60042910e0f3ecfa88c5f778295f82f485"
LONG = "refs/heads/" + "a" * 251
#: Block 10: the four hostile pushes, in block order, and the refs each one set.
POISONED = {
    "adbf21fdd88d67b4dae508c89fb2ebc8328af704b87268bfa41906653efdee9e": [LONG],
    "cfe648b1a040c25fc5de5c431bf648cf20815fb27f2980b71b0ee1a335ec24da": ["refs/heads/df/sub"],
    "b7684bc321df7b6b18328a9a2dc025cbad256891be1a740dee4c2a5c73029fc9": ["refs/heads/sp", "refs/heads/sp/x"],
    "a7434d833e03ea8b5e13ac9700edcf35ee4fe5efec6180645a408a6b63dfd165": ["refs/heads/rd"],
}

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("git") is None, reason="needs git")]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ApiNode]:
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="tar")
    root = tmp_path / "poisoned-v1"
    http, p2p = free_port(), free_port()
    while p2p == http:
        p2p = free_port()
    started = run_node(
        root / "node0",
        root / "genesis.json",
        root / "node0" / "key.json",
        http,
        p2p,
        (root / "admin.token").read_text().strip(),
        tmp_path / "node.log",
        timeout_s=60,
    )
    yield started
    started.stop()
    assert started.proc.returncode == 0, started.log_tail()


def test_the_halted_data_dir_recovers_with_the_same_receipts_and_goes_on(node: ApiNode) -> None:
    admin = node.client(node.admin_token)
    status = expect(admin.get("/api/v1/status"), 200)
    assert status["finalized_height"] >= 10
    for tx_id, refs in POISONED.items():
        receipt = expect(admin.get(f"/api/v1/receipts/{tx_id}"), 200)
        assert (receipt["height"], receipt["ok"], receipt["code"], receipt["message"]) == (
            10,
            True,
            200,
            "ok",
        )
        assert [r["ref"] for r in receipt["result"]["refs"]] == refs
    # The repository holds exactly what the ledger says, names git could not store as files included.
    listed = subprocess.run(
        ["git", "ls-remote", f"{node.url}/octo/hostile.git"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    remote: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        sha, name = line.split("\t")
        remote[name] = sha
    expected = [
        "refs/heads/df",
        "refs/heads/main",
        "refs/heads/rd/x",
        *(r for rs in POISONED.values() for r in rs),
    ]
    assert sorted(remote) == sorted(["HEAD", *expected])
    assert set(remote.values()) == {MAIN}
    # And the chain goes on: a new command is final and applied.
    created = expect(
        admin.post("/api/v3/admin/users", json={"login": "newcomer", "email": "n@example.com"}), 201
    )
    assert created["login"] == "newcomer"
    assert expect(admin.get("/api/v1/status"), 200)["finalized_height"] > status["finalized_height"]
    assert expect(admin.get("/health/ready"), 200)["status"] == "ready"
