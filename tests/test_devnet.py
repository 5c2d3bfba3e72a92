"""Four real validator processes on loopback: finality, crash tolerance, loss of quorum."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.devnet import Devnet
from tests.devnet_util import assert_same_chain, height, signed_tx, start_devnet, submit, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    d = start_devnet(tmp_path_factory.mktemp("devnet"))
    try:
        yield d
    finally:
        d.stop()


def test_transactions_are_finalized_on_every_node(net: Devnet) -> None:
    heights = []
    for k in range(12):
        r = submit(net, k % 4, f"tx-basic-{k}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "finalized"
        assert int(r.headers["X-Stele-Position"]) == body["height"]
        heights.append(body["height"])
    top = max(heights)
    assert wait_until(lambda: all(height(net, i) >= top for i in range(4)), 20)
    assert_same_chain(net, [0, 1, 2, 3], top)
    # The transaction is inside the block the receipt names, on another node.
    blk = httpx.get(f"{net.url(3)}/api/v1/blocks/{heights[0]}").json()
    assert body["tx_id"] in httpx.get(f"{net.url(2)}/api/v1/blocks/{heights[-1]}").json()["block"]["tx_ids"]
    assert blk["certificate"]["kind"] == "finalize"
    assert len(blk["certificate"]["signatures"]) >= 3


def test_submission_without_wait_is_accepted_then_finalized(net: Devnet) -> None:
    tx = signed_tx(net, 1, "tx-async")
    r = submit(net, 1, tx, wait=False)
    assert r.status_code == 202
    tx_id = r.json()["tx_id"]
    # Same bytes, other node: same id, the same transaction's outcome (for whoever may see it).
    again = submit(net, 2, tx, token=net.admin_token())
    assert again.status_code == 200 and again.json()["tx_id"] == tx_id
    assert again.json()["receipt"]["ok"] is True
    anonymous = submit(net, 2, tx)  # holding the bytes is no proof of who you are
    assert anonymous.status_code == 200 and anonymous.json()["status"] == "finalized"
    assert "receipt" not in anonymous.json()


def test_invalid_and_replayed_transactions_are_refused(net: Devnet) -> None:
    r = submit(net, 0, b"not a transaction")
    assert r.status_code == 400 and "not a valid transaction" in r.json()["message"]
    tx = signed_tx(net, 0, "tx-replayed")
    first = submit(net, 0, tx)
    assert first.status_code == 200
    again = submit(net, 3, tx)  # a replay is answered with the original outcome, not applied twice
    assert again.status_code == 200 and again.json()["height"] == first.json()["height"]


def test_bad_requests_get_clear_errors(net: Devnet) -> None:
    assert httpx.post(f"{net.url(0)}/api/v1/transactions", content=b"").status_code == 400
    big = b"x" * (256 * 1024 + 1)
    r = httpx.post(f"{net.url(0)}/api/v1/transactions", content=big)
    assert r.status_code == 413 and "limit" in r.json()["message"]
    r = httpx.get(f"{net.url(0)}/api/v1/blocks/999999999")
    assert r.status_code == 404 and r.json()["message"]
    assert httpx.get(f"{net.url(0)}/api/v1/blocks/abc").status_code == 422
    assert httpx.get(f"{net.url(0)}/health/live").status_code == 200
    assert httpx.get(f"{net.url(0)}/health/ready").status_code == 200


def test_metrics_expose_consensus_state(net: Devnet) -> None:
    text = httpx.get(f"{net.url(0)}/metrics").text
    for name in (
        "stele_consensus_view",
        "stele_consensus_finalized_height",
        "stele_p2p_peers_connected 3.0",
        "stele_mempool_size",
        "stele_tx_finality_seconds_bucket",
    ):
        assert name in text


def test_one_validator_killed_the_rest_continue_and_it_catches_up(net: Devnet) -> None:
    net.kill(3)
    before = height(net, 0)
    for k in range(5):
        r = submit(net, k % 3, f"tx-one-down-{k}")
        assert r.status_code == 200, r.text
    assert height(net, 0) > before
    net.restart(3)
    target = max(height(net, i) for i in range(3))
    assert wait_until(lambda: height(net, 3) >= target, 60), "restarted node did not catch up"
    assert_same_chain(net, [0, 1, 2, 3], target)
    r = submit(net, 3, "tx-after-restart")
    assert r.status_code == 200, r.text


def test_two_validators_killed_stops_finality_then_resumes(net: Devnet) -> None:
    net.kill(2)
    net.kill(3)
    assert wait_until(lambda: (net.status(0) or {}).get("peers_connected") == 1, 10)
    r = submit(net, 0, "tx-no-quorum", timeout=10)
    assert r.status_code == 503
    assert "quorum" in r.json()["message"]
    assert httpx.get(f"{net.url(0)}/health/ready").status_code == 503
    stuck = height(net, 0)
    assert not wait_until(lambda: height(net, 0) > stuck, 2.0), "finalized without a quorum"
    net.restart(2)
    net.restart(3)
    assert wait_until(lambda: (net.status(0) or {}).get("peers_connected") == 3, 30)
    r = submit(net, 0, "tx-quorum-back", timeout=30)
    assert r.status_code == 200, r.text
    top = r.json()["height"]
    assert wait_until(lambda: all(height(net, i) >= top for i in range(4)), 60)
    assert_same_chain(net, [0, 1, 2, 3], top)


def test_whole_devnet_restart_resumes_the_same_chain(tmp_path: Path) -> None:
    net = start_devnet(tmp_path / "restart")
    try:
        r = submit(net, 0, "tx-before-restart")
        assert r.status_code == 200
        h = r.json()["height"]
        first = [httpx.get(f"{net.url(0)}/api/v1/blocks/{k}").json()["hash"] for k in range(1, h + 1)]
        net.stop()
        again = Devnet.init(tmp_path / "restart")
        assert again.genesis_path.read_bytes() == net.genesis_path.read_bytes()
        net = again
        net.start()
        assert net.wait_ready(60, min_height=h + 1)
        assert [httpx.get(f"{net.url(1)}/api/v1/blocks/{k}").json()["hash"] for k in range(1, h + 1)] == first
        assert submit(net, 2, "tx-after-full-restart").status_code == 200
    finally:
        net.stop()
