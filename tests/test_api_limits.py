"""Limits and access rules at the HTTP edge of a real node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.api_node import ApiNode, expect, start_api_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiNode]:
    n = start_api_node(tmp_path_factory.mktemp("limits"))
    try:
        yield n
    finally:
        n.stop()


def test_oversized_json_bodies_get_413_before_parsing(node: ApiNode) -> None:
    big = b'{"login": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = node.client().post("/api/v3/admin/users", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["message"]


def test_event_stream_is_for_site_admins(node: ApiNode) -> None:
    assert node.client().get("/api/v1/events").status_code == 401
    expect(
        node.client(node.admin_token).post("/api/v3/admin/users", json={"login": "ev", "email": "e@x.io"}),
        201,
    )
    events = expect(node.client(node.admin_token).get("/api/v1/events"), 200)["events"]
    assert any(e["type"] == "UserCreated" for e in events)


def test_out_of_range_query_values_are_422_not_500(node: ApiNode) -> None:
    c = node.client(node.admin_token)
    assert c.get("/api/v3/user/repos", params={"page": 10**20}).status_code == 422
    assert c.get("/api/v1/events", params={"after": 10**30}).status_code == 422
