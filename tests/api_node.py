"""A real single-validator node process for API tests (a single validator is its own quorum).

`start_api_node(tmp)` writes a key and a genesis whose site admin `admin` holds a fresh
API token, runs `python -m api.cli node run` on free loopback ports, waits for
`/health/ready` and returns an `ApiNode`; `stop()` sends SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adapters.keys import generate_key, save_key
from consensus.genesis import Genesis, ValidatorInfo
from domain.rules import ChainRules

ROOT = Path(__file__).resolve().parent.parent
ADMIN_LOGIN = "admin"
ADMIN_EMAIL = "admin@example.com"
#: The genesis admin's token scopes (as `stele up` gives them).
ADMIN_SCOPES = ("admin:org", "admin:public_key", "delete_repo", "repo", "site_admin", "user")
#: What `create_user` issues by default: every scope a user's own work needs, so that tests
#: of permissions stay tests of permissions (the scope tests issue narrower tokens).
USER_SCOPES = ("admin:org", "admin:public_key", "delete_repo", "repo", "user")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ApiNode:
    url: str
    admin_token: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, scheme: str = "token") -> httpx.Client:
        headers = {"Accept": "application/vnd.github+json"}
        if token is not None:
            headers["Authorization"] = f"{scheme} {token}"
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.clients.append(c)
        return c

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_api_node(
    tmp: Path,
    timeout_s: float = 30.0,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ApiNode:
    """Start (or, when `tmp` already holds its chain, restart) the single-validator node.

    `env` adds variables to the node's environment (e.g. lowered `STELE_HTTP_BODY_*` limits).
    """
    tmp.mkdir(parents=True, exist_ok=True)
    key_path = tmp / "validator.key"
    genesis_path = tmp / "genesis.json"
    token_path = tmp / "admin.token"
    if genesis_path.exists():
        genesis = Genesis.load(genesis_path)
        http_port = genesis.validators[0].http_port
        p2p_port = genesis.validators[0].p2p_port
        admin_token = token_path.read_text()
    else:
        seed = generate_key()
        pub = save_key(key_path, seed)
        http_port = free_port()
        p2p_port = free_port()
        while p2p_port == http_port:
            p2p_port = free_port()
        admin_token = "stl_" + secrets.token_urlsafe(30)
        token_path.write_text(admin_token)
        genesis = Genesis(
            chain_id="stele-api-test",
            genesis_time_ms=int(time.time() * 1000) - 1000,
            validators=(ValidatorInfo("v0", pub, "127.0.0.1", p2p_port, http_port),),
            extra={
                "admin": {
                    "login": ADMIN_LOGIN,
                    "email": ADMIN_EMAIL,
                    "token_hash": hashlib.sha256(admin_token.encode()).hexdigest(),
                    "scopes": list(ADMIN_SCOPES),
                },
                "protocol": ChainRules.latest().to_json(),
            },
        )
        genesis.save(genesis_path)
    return run_node(
        tmp / "data",
        genesis_path,
        key_path,
        http_port,
        p2p_port,
        admin_token,
        tmp / "node.log",
        timeout_s=timeout_s,
        extra_args=extra_args,
        env=env,
    )


def run_node(
    data_dir: Path,
    genesis_path: Path,
    key_path: Path,
    http_port: int,
    p2p_port: int,
    admin_token: str,
    log_path: Path,
    *,
    timeout_s: float = 30.0,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> ApiNode:
    """Run `stele node run` on these files and ports, and wait until it is ready."""
    cmd = [
        sys.executable,
        "-m",
        "api.cli",
        "node",
        "run",
        "--data-dir",
        str(data_dir),
        "--genesis",
        str(genesis_path),
        "--key",
        str(key_path),
        "--http-port",
        str(http_port),
        "--p2p-port",
        str(p2p_port),
        "--log-level",
        "warning",
        *extra_args,
    ]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    node = ApiNode(f"http://127.0.0.1:{http_port}", admin_token, proc, log_path)
    try:
        _wait_ready(node, timeout_s)
    except BaseException:
        node.stop()
        raise
    return node


def _wait_ready(node: ApiNode, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if node.proc.poll() is not None:
            raise RuntimeError(f"node exited with {node.proc.returncode}:\n{node.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{node.url}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"node not ready within {timeout_s:g}s:\n{node.log_tail()}")


def json_of(response: httpx.Response) -> Any:
    """The JSON body, with the status and text in the assertion message when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise AssertionError(f"{response.status_code}: {response.text[:500]}") from None


def expect(response: httpx.Response, status: int) -> Any:
    """Assert the status (showing the body when it differs) and return the JSON body, if any."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: "
        f"want {status}, got {response.status_code}: {response.text[:500]}"
    )
    return response.json() if response.content else None


def create_user(admin: httpx.Client, login: str, scopes: tuple[str, ...] = USER_SCOPES) -> str:
    """Create a user through the v3 admin API and return a fresh API token for them."""
    expect(admin.post("/api/v3/admin/users", json={"login": login, "email": f"{login}@example.com"}), 201)
    issued = expect(
        admin.post(f"/api/v3/admin/users/{login}/authorizations", json={"scopes": list(scopes)}), 201
    )
    token = issued["token"]
    assert isinstance(token, str)
    return token
