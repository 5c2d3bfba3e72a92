"""The ledger end to end on four real validators: write on one node, read on another, restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.devnet import Devnet
from tests.devnet_util import start_devnet, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    d = start_devnet(tmp_path_factory.mktemp("ledger-devnet"))
    try:
        yield d
    finally:
        d.stop()


def _client(net: Devnet, i: int, token: str | None) -> httpx.Client:
    headers = {"Authorization": f"token {token}"} if token else {}
    return httpx.Client(base_url=f"{net.url(i)}/api/v3", headers=headers, timeout=30)


def _ledger(net: Devnet, i: int) -> dict[str, Any]:
    return dict(httpx.get(f"{net.url(i)}/api/v1/ledger", timeout=5).json())


def test_write_on_one_node_read_on_another(net: Devnet) -> None:
    admin = net.admin_token()
    assert admin
    with _client(net, 0, admin) as n0:
        r = n0.post("/admin/users", json={"login": "octo", "email": "octo@example.com"})
        assert r.status_code == 201, r.text
        pos = int(r.headers["X-Stele-Position"])
    with _client(net, 3, None) as n3:
        r = n3.get("/users/octo", headers={"X-Stele-Min-Position": str(pos)})
        assert r.status_code == 200, r.text
        assert r.json()["login"] == "octo"
    with _client(net, 1, admin) as n1:
        r = n1.post("/admin/users/octo/authorizations", json={"scopes": ["repo"]})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        pos = int(r.headers["X-Stele-Position"])
    with _client(net, 2, token) as n2:
        r = n2.post(
            "/user/repos",
            json={"name": "secret", "private": True},
            headers={"X-Stele-Min-Position": str(pos)},
        )
        assert r.status_code == 201, r.text
        pos = int(r.headers["X-Stele-Position"])
    with _client(net, 3, token) as n3:
        r = n3.get("/repos/octo/secret", params={"min_position": pos})
        assert r.status_code == 200 and r.json()["private"] is True
    with _client(net, 3, None) as anon:
        assert anon.get("/repos/octo/secret", params={"min_position": pos}).status_code == 404
    # Every node applied the same log: block pos+1 commits to the app hash after pos, and a
    # node whose own state hash differed would have halted rather than apply it.
    assert wait_until(lambda: all(int(_ledger(net, i)["height"]) > pos for i in range(4)), 20)
    blocks = [httpx.get(f"{net.url(i)}/api/v1/blocks/{pos + 1}").json() for i in range(4)]
    assert len({b["hash"] for b in blocks}) == 1
    assert len({b["block"]["app_hash"] for b in blocks}) == 1


def test_revoked_or_unknown_tokens_get_401(net: Devnet) -> None:
    with _client(net, 0, "stl_not-a-real-token") as c:
        r = c.get("/user")
        assert r.status_code == 401 and r.json()["message"] == "Bad credentials"


def test_rejected_command_reports_the_reason(net: Devnet) -> None:
    with _client(net, 1, net.admin_token()) as c:
        r = c.post("/admin/users", json={"login": "bad--login", "email": "x@example.com"})
        assert r.status_code == 422, r.text
        r = c.post("/admin/users", json={"login": "admin", "email": "y@example.com"})
        assert r.status_code == 422 and "already" in r.text.lower()


def test_whole_devnet_restart_keeps_the_state(tmp_path: Path) -> None:
    net = start_devnet(tmp_path / "restart")
    try:
        admin = net.admin_token()
        with _client(net, 0, admin) as c:
            r = c.post("/admin/users", json={"login": "keeper", "email": "k@example.com"})
            assert r.status_code == 201, r.text
            r = c.post("/admin/organizations", json={"login": "acme", "admin": "keeper"})
            assert r.status_code == 201, r.text
        before = {i: _ledger(net, i) for i in range(4)}
        net.stop()
        net = Devnet.init(tmp_path / "restart")
        net.start()
        net.wait_ready(60)
        for i in range(4):
            assert int(_ledger(net, i)["height"]) >= int(before[i]["height"])
        with _client(net, 3, admin) as c:
            assert c.get("/users/keeper").status_code == 200
            assert c.get("/orgs/acme").status_code == 200
            r = c.post("/admin/users", json={"login": "after", "email": "a@example.com"})
            assert r.status_code == 201, r.text
    finally:
        net.stop()
