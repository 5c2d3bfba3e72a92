"""Limits and access rules at the HTTP edge of a real node."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from api.limits import BATCH_BODY_LIMIT, JSON_BODY_LIMIT, HttpLimits
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


def _chunked(size: int) -> Iterator[bytes]:
    """A body of `size` bytes sent without Content-Length (httpx streams it chunked)."""
    sent = 0
    while sent < size:
        piece = min(64 * 1024, size - sent)
        sent += piece
        yield b" " * piece


def _json_routes(node: ApiNode) -> list[tuple[str, str]]:
    """(method, path) of every route with a JSON body, path parameters filled in."""
    spec = expect(node.client().get("/openapi.json"), 200)
    routes = []
    for template, operations in spec["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                routes.append((method.upper(), re.sub(r"\{[^}]+\}", "x", template)))
    return routes


def test_chunked_bodies_over_the_limit_get_413_on_every_json_route(node: ApiNode) -> None:
    """Without Content-Length the limit is only known while reading: still 413, never 400."""
    routes = _json_routes(node)
    assert len(routes) >= 10 and ("POST", "/api/v3/user/repos") in routes
    c = node.client(node.admin_token)
    for method, path in routes:
        r = c.request(method, path, content=_chunked(JSON_BODY_LIMIT + 1))
        assert r.status_code == 413, (method, path, r.status_code, r.text)
        assert r.json()["message"] == f"request body exceeds the limit of {JSON_BODY_LIMIT} bytes"
    r = c.post("/api/v1/transactions", content=_chunked(256 * 1024 + 1))
    assert r.status_code == 413 and "limit" in r.json()["message"], r.text
    r = c.post("/api/v1/transactions/batch", content=_chunked(BATCH_BODY_LIMIT + 1))
    assert r.status_code == 413 and "limit" in r.json()["message"], r.text


def test_the_batch_route_keeps_its_bigger_limit(node: ApiNode) -> None:
    frames = (1000).to_bytes(4, "big") + b"x" * 1000  # one framed (invalid) transaction
    body = frames * ((2 * JSON_BODY_LIMIT) // len(frames))
    r = node.client().post("/api/v1/transactions/batch", content=body)
    assert r.status_code in (202, 503), r.text  # read whole and parsed: each is rejected on its own
    assert len(r.json()["rejected"]) == len(body) // len(frames)


def test_limits_come_from_one_place() -> None:
    limits = HttpLimits()
    assert limits.body_limit("/api/v3/user/repos") == JSON_BODY_LIMIT
    assert limits.body_limit("/api/v1/transactions") == JSON_BODY_LIMIT
    assert limits.body_limit("/api/v1/transactions/batch") == BATCH_BODY_LIMIT
    assert limits.body_limit("/octo/repo.git/git-receive-pack") is None  # git has its own
    env = {"STELE_HTTP_BODY_STALL_S": "5", "STELE_HTTP_BODY_MIN_RATE": "0", "STELE_HTTP_BODY_GRACE_S": " "}
    tuned = HttpLimits.from_env(env)
    assert (tuned.body_stall_s, tuned.body_min_rate, tuned.body_grace_s) == (5.0, 0.0, limits.body_grace_s)
    assert HttpLimits.from_env({}) == limits
    with pytest.raises(ValueError, match="STELE_HTTP_BODY_STALL_S must be a number"):
        HttpLimits.from_env({"STELE_HTTP_BODY_STALL_S": "soon"})
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ValueError, match="body_grace_s"):
            HttpLimits.from_env({"STELE_HTTP_BODY_GRACE_S": bad})
