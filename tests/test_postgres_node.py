"""A node whose event store is PostgreSQL (the server on 127.0.0.1:5432): write, restart, read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from adapters.postgres_location import PostgresLocation, drop_schema
from tests.api_node import expect, start_api_node

pytestmark = pytest.mark.slow

BASE_URL = os.environ.get("STELE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def test_node_on_postgres_keeps_its_state_across_restart(tmp_path: Path) -> None:
    schema = f"stele_node_{secrets.token_hex(4)}"
    url = f"{BASE_URL}?schema={schema}"
    node = start_api_node(tmp_path, extra_args=["--event-store", url])
    try:
        with node.client(node.admin_token) as c:
            expect(c.post("/api/v3/admin/users", json={"login": "pguser", "email": "pg@example.com"}), 201)
        before = expect(node.client().get("/api/v1/ledger"), 200)
        node.stop()
        assert not (tmp_path / "data" / "events.sqlite").exists()
        node = start_api_node(tmp_path, extra_args=["--event-store", url])
        after = expect(node.client().get("/api/v1/ledger"), 200)
        assert after["height"] >= before["height"]
        user = expect(node.client().get("/api/v3/users/pguser"), 200)
        assert user["login"] == "pguser"
        admin = node.client(node.admin_token)
        events = expect(admin.get("/api/v1/events", params={"limit": 1000}), 200)["events"]
        assert any(e["type"] == "UserCreated" and e["data"]["login"] == "pguser" for e in events)
    finally:
        node.stop()
        drop_schema(PostgresLocation.parse(url))
