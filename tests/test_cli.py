"""Key files, the `stele` CLI and devnet setup (no real node processes here)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.keys import KeyFileError, generate_key, load_key, public_key, save_key
from api import cli
from api.devnet import Devnet, DevnetError
from consensus.genesis import Genesis

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env.pop("STELE_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=cwd or REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_clean_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# ---- key files -------------------------------------------------------------------------------


def test_key_round_trip_and_permissions(tmp_path: Path) -> None:
    seed = generate_key()
    assert len(seed) == 32
    path = tmp_path / "dir" / "key.json"
    pub = save_key(path, seed)
    assert pub == public_key(seed)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(path) == seed
    doc = json.loads(path.read_text())
    assert doc == {"type": "ed25519", "seed": seed.hex(), "pubkey": pub.hex()}
    assert [p.name for p in path.parent.iterdir()] == ["key.json"]  # no temp files left


def test_save_key_without_overwrite_keeps_existing(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    first = generate_key()
    save_key(path, first)
    with pytest.raises(KeyFileError, match="already exists"):
        save_key(path, generate_key(), overwrite=False)
    assert load_key(path) == first
    second = generate_key()
    save_key(path, second)  # overwrite is the default
    assert load_key(path) == second


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{garbled", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"type": "rsa"}', "unsupported key type"),
        ('{"type": "ed25519", "seed": "zz", "pubkey": "00"}', "not valid hex"),
        ('{"type": "ed25519", "seed": "0011", "pubkey": "00"}', "32 bytes"),
    ],
)
def test_garbled_key_file(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "key.json"
    path.write_text(content)
    with pytest.raises(KeyFileError, match=match):
        load_key(path)


def test_key_file_pubkey_mismatch_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    save_key(path, generate_key())
    doc = json.loads(path.read_text())
    doc["pubkey"] = public_key(generate_key()).hex()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="does not match"):
        load_key(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key(tmp_path / "nope.json")


# ---- CLI as a subprocess ---------------------------------------------------------------------


def test_keygen_cli(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    r = run_cli("keygen", "--out", str(out))
    assert r.returncode == 0, r.stderr
    pub = r.stdout.strip()
    assert public_key(load_key(out)).hex() == pub
    assert stat.S_IMODE(out.stat().st_mode) == 0o600

    r = run_cli("keygen", "--out", str(out))
    assert_clean_error(r, "already exists")
    assert public_key(load_key(out)).hex() == pub

    r = run_cli("keygen", "--out", str(out), "--force")
    assert r.returncode == 0
    assert r.stdout.strip() != pub


def test_genesis_new_and_show_cli(tmp_path: Path) -> None:
    pubs = []
    for i in range(3):
        r = run_cli("keygen", "--out", str(tmp_path / f"k{i}.json"))
        pubs.append(r.stdout.strip())
    out = tmp_path / "genesis.json"
    specs = [f"--validator=n{i}={pubs[i]}@127.0.0.1:{7000 + i}:{8000 + i}" for i in range(3)]
    r = run_cli("genesis", "new", "--chain-id", "demo-1", *specs, "--out", str(out), "--time-ms", "123")
    assert r.returncode == 0, r.stderr
    g = Genesis.load(out)
    assert g.chain_id == "demo-1" and g.genesis_time_ms == 123
    assert [v.pubkey.hex() for v in g.validators] == sorted(pubs)

    r = run_cli("genesis", "show", str(out))
    assert r.returncode == 0, r.stderr
    assert g.hash().hex() in r.stdout
    assert "demo-1" in r.stdout
    for p in pubs:
        assert p in r.stdout


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    pub = public_key(generate_key()).hex()
    garbled = tmp_path / "garbled.json"
    garbled.write_text("\x00 not json")
    spec = f"a={pub}@127.0.0.1:7000:8000"
    out = str(tmp_path / "g.json")

    assert_clean_error(
        run_cli("genesis", "new", "--chain-id", "bad id!", "--validator", spec, "--out", out), "chain_id"
    )
    dup = f"b={pub}@127.0.0.1:7001:8001"
    assert_clean_error(
        run_cli("genesis", "new", "--chain-id", "c", "--validator", spec, "--validator", dup, "--out", out),
        "share public key",
    )
    assert_clean_error(
        run_cli("genesis", "new", "--chain-id", "c", "--validator", "nonsense", "--out", out),
        "NAME=PUBKEY_HEX@HOST:P2P_PORT:HTTP_PORT",
    )
    assert_clean_error(run_cli("genesis", "show", str(garbled)), "not valid JSON")
    assert_clean_error(run_cli("genesis", "show", str(tmp_path / "missing.json")), "does not exist")
    assert_clean_error(
        run_cli(
            "node",
            "run",
            "--data-dir",
            str(tmp_path / "d"),
            "--genesis",
            str(tmp_path / "missing.json"),
            "--key",
            str(garbled),
            "--http-port",
            "8080",
            "--p2p-port",
            "7000",
        ),
        "does not exist",
    )
    assert_clean_error(run_cli("node", "run", "--http-port", "99999"), "port")
    assert_clean_error(run_cli("frobnicate"), "invalid choice")
    assert_clean_error(run_cli(), "required")


# ---- CLI parsing in-process (node run with a stand-in api.node) ------------------------------


@dataclass(frozen=True)
class _FakeOptions:
    data_dir: Path
    genesis_path: Path
    key_path: Path
    http_host: str
    http_port: int
    p2p_host: str
    p2p_port: int
    log_level: str = "info"
    event_store_url: str | None = None


def test_node_run_builds_node_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    net = Devnet.init(tmp_path / "net", n=1, http_port=18080, p2p_port=17000)
    seen: list[_FakeOptions] = []
    fake = types.ModuleType("api.node")
    fake.NodeOptions = _FakeOptions  # type: ignore[attr-defined]

    def run_node(opts: _FakeOptions) -> int:
        seen.append(opts)
        return 7

    fake.run_node = run_node  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "api.node", fake)

    node = net.nodes[0]
    argv = ["node", "run", "--data-dir", str(node.dir), "--genesis", str(net.genesis_path)]
    argv += ["--key", str(node.key_path), "--http-port", "18080", "--p2p-port", "17000"]
    assert cli.main([*argv, "--log-level", "debug"]) == 7
    assert seen == [
        _FakeOptions(
            node.dir, net.genesis_path, node.key_path, "127.0.0.1", 18080, "127.0.0.1", 17000, "debug"
        )
    ]

    # A key that is not in genesis is refused before the node starts.
    stranger = tmp_path / "stranger.json"
    save_key(stranger, generate_key())
    argv[argv.index(str(node.key_path))] = str(stranger)
    assert cli.main(argv) == 2
    assert "is not a validator" in capsys.readouterr().err
    assert len(seen) == 1


def test_validator_spec_parsing() -> None:
    pub = public_key(generate_key())
    v = cli.parse_validator_spec(f"x={pub.hex()}@[::1]:7000:8000")
    assert (v.name, v.pubkey, v.host, v.p2p_port, v.http_port) == ("x", pub, "::1", 7000, 8000)
    for bad in ["x", f"x={pub.hex()}", f"x={pub.hex()}@h:1", f"x={pub.hex()}@h:a:b", f"={pub.hex()}@h:1:2"]:
        with pytest.raises(cli.CliError):
            cli.parse_validator_spec(bad)


# ---- devnet setup ---------------------------------------------------------------------------


def test_devnet_init_creates_keys_and_genesis(tmp_path: Path) -> None:
    d = tmp_path / "net"
    net = Devnet.init(d, n=4, http_port=18080, p2p_port=17000)
    g = Genesis.load(d / "genesis.json")
    assert g == net.genesis
    assert g.n == 4
    for i, node in enumerate(net.nodes):
        assert node.name == f"node{i}"
        assert node.key_path == d / f"node{i}" / "key.json"
        assert node.log_path == d / f"node{i}" / "node.log"
        assert stat.S_IMODE(node.key_path.stat().st_mode) == 0o600
        assert node.pubkey == public_key(load_key(node.key_path))
        assert (node.http_port, node.p2p_port) == (18080 + i, 17000 + i)
        assert node.url == f"http://127.0.0.1:{18080 + i}"
        info = g.validators[g.index_of(node.pubkey)]  # type: ignore[index]
        assert (info.name, info.host, info.http_port, info.p2p_port) == (
            f"node{i}",
            "127.0.0.1",
            18080 + i,
            17000 + i,
        )
    cmd = net.node_command(2)
    assert cmd[:5] == [sys.executable, "-m", "api.cli", "node", "run"]
    assert "18082" in cmd and "17002" in cmd and str(net.nodes[2].key_path) in cmd


def test_devnet_init_is_idempotent(tmp_path: Path) -> None:
    d = tmp_path / "net"
    first = Devnet.init(d, n=3, http_port=18080, p2p_port=17000)
    keys = [n.key_path.read_bytes() for n in first.nodes]
    genesis_bytes = (d / "genesis.json").read_bytes()

    again = Devnet.init(d)  # ports and count come from the existing genesis
    assert again.genesis == first.genesis
    assert again.nodes == first.nodes
    assert [n.key_path.read_bytes() for n in again.nodes] == keys
    assert (d / "genesis.json").read_bytes() == genesis_bytes

    assert Devnet.init(d, n=3, http_port=18080, p2p_port=17000).nodes == first.nodes
    with pytest.raises(DevnetError, match="has 3 validator"):
        Devnet.init(d, n=4)
    with pytest.raises(DevnetError, match="--http-port 18080"):
        Devnet.init(d, http_port=9999)


def test_devnet_init_reuses_keys_from_interrupted_init(tmp_path: Path) -> None:
    d = tmp_path / "net"
    first = Devnet.init(d, n=2, http_port=18080, p2p_port=17000)
    (d / "genesis.json").unlink()  # as if the first run died before writing genesis
    second = Devnet.init(d, n=2, http_port=18080, p2p_port=17000)
    assert [n.pubkey for n in second.nodes] == [n.pubkey for n in first.nodes]


def test_devnet_init_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DevnetError, match="between 1 and 256"):
        Devnet.init(tmp_path / "a", n=0)
    with pytest.raises(DevnetError, match="overlap"):
        Devnet.init(tmp_path / "b", n=4, http_port=7002, p2p_port=7000)
    with pytest.raises(DevnetError, match="no room"):
        Devnet.init(tmp_path / "c", n=4, http_port=65534, p2p_port=7000)


def test_devnet_reports_busy_ports(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        http_port = port + 10 if port < 60000 else port - 10
        net = Devnet.init(tmp_path / "net", n=2, http_port=http_port, p2p_port=port)
        with pytest.raises(DevnetError, match=f"{port} \\(node0 P2P\\)"):
            net.start()
    assert all(not net.is_running(i) for i in range(net.n))


def test_up_rejects_validator_mismatch_via_cli(tmp_path: Path) -> None:
    d = tmp_path / "net"
    Devnet.init(d, n=2, http_port=18080, p2p_port=17000)
    r = run_cli("up", "--data-dir", str(d), "--validators", "3")
    assert_clean_error(r, "has 2 validator", "--validators 2")
