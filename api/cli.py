"""The `stele` command line: keys, genesis files, running a node, and a local devnet.

Every failure is reported as one line on stderr with exit code 2 (runtime
failures of `stele up`, such as a node dying, exit 1). Heavy imports (the node,
FastAPI, httpx) happen inside the commands that need them so `stele keygen` and
`stele --help` stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from adapters.keys import KeyFileError, generate_key, load_key, public_key, save_key
from api.devnet import DevnetError
from consensus.genesis import Genesis, GenesisError, ValidatorInfo, parse_pubkey
from domain.rules import ChainRules

PROG = "stele"
LOG_LEVELS = ("debug", "info", "warning", "error")


class CliError(Exception):
    """A user-facing error; main() prints its message as one line and exits 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (still exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---- argument types -----------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {port}")
    return port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def parse_validator_spec(spec: str) -> ValidatorInfo:
    """Parse NAME=PUBKEY_HEX@HOST:P2P_PORT:HTTP_PORT (an IPv6 host goes in brackets)."""
    form = "expected NAME=PUBKEY_HEX@HOST:P2P_PORT:HTTP_PORT"
    name, eq, rest = spec.partition("=")
    pub_hex, at, addr = rest.partition("@")
    parts = addr.rsplit(":", 2)
    if not eq or not at or not name or len(parts) != 3:
        raise CliError(f"bad --validator {spec!r}: {form}")
    host, p2p_text, http_text = parts
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        p2p_port, http_port = int(p2p_text), int(http_text)
    except ValueError:
        raise CliError(f"bad --validator {spec!r}: ports must be integers ({form})") from None
    try:
        return ValidatorInfo(name, parse_pubkey(pub_hex, f"validator {name!r}"), host, p2p_port, http_port)
    except GenesisError as e:
        raise CliError(f"bad --validator {spec!r}: {e}") from None


# ---- commands -----------------------------------------------------------------------------


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise CliError(f"{out} is a directory; give a file name such as {out / 'key.json'}")
    seed = generate_key()
    pub = save_key(out, seed, overwrite=args.force)
    print(pub.hex())
    return 0


def cmd_genesis_new(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} already exists; pass --force to overwrite it")
    validators = tuple(parse_validator_spec(s) for s in args.validator)
    time_ms = int(time.time() * 1000) if args.time_ms is None else args.time_ms
    genesis = Genesis(args.chain_id, time_ms, validators, {"protocol": ChainRules.latest().to_json()})
    genesis.save(out)
    print(f"wrote {out}: chain {genesis.chain_id}, {genesis.n} validator(s), hash {genesis.hash().hex()}")
    return 0


def cmd_genesis_show(args: argparse.Namespace) -> int:
    genesis = Genesis.load(args.file)
    print(format_genesis(genesis))
    return 0


def format_genesis(genesis: Genesis) -> str:
    """A human-readable summary: what an operator compares before joining a chain."""
    vs = genesis.validator_set()
    t = genesis.genesis_time_ms
    try:
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + f".{t % 1000:03d}Z"
    except (OverflowError, OSError, ValueError):
        iso = "out of range"
    lines = [
        f"chain id:      {genesis.chain_id}",
        f"genesis time:  {t} ({iso})",
        f"genesis hash:  {genesis.hash().hex()}",
        f"validators:    {vs.n} (tolerates f={vs.f} faulty, quorum {vs.quorum})",
        f"protocol:      {_protocol_line(genesis)}",
    ]
    rows = [("#", "name", "pubkey", "p2p", "http")]
    for i, v in enumerate(genesis.validators):
        host = f"[{v.host}]" if ":" in v.host else v.host
        rows.append((str(i), v.name, v.pubkey.hex(), f"{host}:{v.p2p_port}", f"{host}:{v.http_port}"))
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    for r in rows:
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if genesis.extra:
        import json

        lines.append("extra:")
        for key in sorted(genesis.extra):
            lines.append(f"  {key}: {json.dumps(genesis.extra[key], sort_keys=True)}")
    return "\n".join(lines)


def _protocol_line(genesis: Genesis) -> str:
    try:
        rules = ChainRules.from_genesis(genesis.extra)
    except ValueError as exc:
        return f"invalid: {exc}"
    if not rules.upgrades:
        return "version 1 (no protocol entry)"
    steps = ", ".join(f"version {v} from height {h}" for h, v in rules.upgrades)
    return f"{steps}; max object size {rules.max_object_bytes} bytes"


def cmd_node_run(args: argparse.Namespace) -> int:
    genesis_path, key_path = Path(args.genesis), Path(args.key)
    # Check the inputs here so the common mistakes get a precise message.
    genesis = Genesis.load(genesis_path)
    pub = public_key(load_key(key_path))
    if genesis.index_of(pub) is None:
        raise CliError(f"key {key_path} (public key {pub.hex()[:16]}…) is not a validator in {genesis_path}")
    if args.http_port == args.p2p_port:
        raise CliError("--http-port and --p2p-port must differ")

    from api.node import NodeOptions, run_node

    opts = NodeOptions(
        data_dir=Path(args.data_dir),
        genesis_path=genesis_path,
        key_path=key_path,
        http_host=args.host,
        http_port=args.http_port,
        p2p_host=args.host,
        p2p_port=args.p2p_port,
        log_level=args.log_level,
        event_store_url=args.event_store or os.environ.get("STELE_EVENT_STORE") or None,
    )
    return int(run_node(opts))


def cmd_node_repair_repo(args: argparse.Namespace) -> int:
    """Ask a running node to rebuild its copy of one repository from the ledger."""
    import httpx

    owner, sep, name = args.repo.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise CliError(f"name the repository as OWNER/REPO, not {args.repo!r}")
    token = os.environ.get("STELE_TOKEN")
    if token is None:
        path = Path(args.token_file)
        if not path.is_file():
            raise CliError(f"no admin token: {path} does not exist (pass --token-file, or set STELE_TOKEN)")
        token = path.read_text().strip()
    url = f"{args.node.rstrip('/')}/api/v1/admin/repos/{owner}/{name}/repair"
    try:
        response = httpx.post(url, headers={"Authorization": f"token {token}"}, timeout=90.0)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the node at {args.node}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200:
        raise CliError(
            f"the node answered {response.status_code}: {body.get('message', response.text[:200])}"
        )
    if body.get("status") == "repaired":
        print(f"{body.get('full_name', args.repo)}: repaired on {args.node}")
        return 0
    print(
        f"{body.get('full_name', args.repo)}: still repairing after {body.get('attempts', 0)} attempt(s): "
        f"{body.get('last_error') or body.get('reason')}",
        file=sys.stderr,
    )
    return 1


def cmd_up(args: argparse.Namespace) -> int:
    from api.devnet import up

    return up(
        args.data_dir,
        args.validators,
        args.http_port,
        args.p2p_port,
        log_level=args.log_level,
        ready_timeout=args.ready_timeout,
    )


# ---- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Stele: a code forge ordered by Simplex BFT consensus.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    kg = sub.add_parser("keygen", help="create an Ed25519 key file and print its public key")
    kg.add_argument("--out", required=True, metavar="FILE", help="where to write the key (mode 0600)")
    kg.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    kg.set_defaults(func=cmd_keygen)

    gen = sub.add_parser("genesis", help="create or inspect a genesis file")
    gsub = gen.add_subparsers(dest="genesis_command", required=True, metavar="SUBCOMMAND")
    gnew = gsub.add_parser("new", help="write a new genesis file")
    gnew.add_argument("--chain-id", required=True, metavar="ID", help="1-64 chars of [A-Za-z0-9._-]")
    gnew.add_argument(
        "--validator",
        required=True,
        action="append",
        metavar="NAME=PUBKEY_HEX@HOST:P2P_PORT:HTTP_PORT",
        help="one validator; repeat for each",
    )
    gnew.add_argument("--out", required=True, metavar="FILE")
    gnew.add_argument(
        "--time-ms", type=_non_negative_int, metavar="MS", help="genesis time in Unix ms (default: now)"
    )
    gnew.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    gnew.set_defaults(func=cmd_genesis_new)
    gshow = gsub.add_parser("show", help="print a genesis file and its hash")
    gshow.add_argument("file", metavar="FILE")
    gshow.set_defaults(func=cmd_genesis_show)

    node = sub.add_parser("node", help="run a validator node")
    nsub = node.add_subparsers(dest="node_command", required=True, metavar="SUBCOMMAND")
    run = nsub.add_parser("run", help="run a node in the foreground until SIGINT/SIGTERM")
    run.add_argument("--data-dir", required=True, metavar="DIR", help="the node's storage")
    run.add_argument("--genesis", required=True, metavar="FILE")
    run.add_argument("--key", required=True, metavar="FILE", help="this validator's key file")
    run.add_argument("--http-port", required=True, type=_port, metavar="PORT")
    run.add_argument("--p2p-port", required=True, type=_port, metavar="PORT")
    run.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    run.add_argument(
        "--event-store",
        metavar="URL",
        help="postgresql://user@host:port/db?schema=NAME for a PostgreSQL event store "
        "(default: SQLite at DIR/events.sqlite; env STELE_EVENT_STORE)",
    )
    run.set_defaults(func=cmd_node_run)
    rep = nsub.add_parser(
        "repair-repo",
        help="rebuild a running node's copy of a repository from the ledger",
        description="Ask a running node to rebuild its bare repository OWNER/REPO from the ledger "
        "(every accepted pack and the finalized refs), and wait for it. Needs a site admin's token.",
    )
    rep.add_argument("repo", metavar="OWNER/REPO")
    rep.add_argument("--node", default="http://127.0.0.1:8080", metavar="URL", help="(default: %(default)s)")
    rep.add_argument(
        "--token-file",
        default=".stele/admin.token",
        metavar="FILE",
        help="a site admin's API token (default: %(default)s; env STELE_TOKEN overrides)",
    )
    rep.set_defaults(func=cmd_node_repair_repo)

    upp = sub.add_parser(
        "up",
        help="run a local devnet of N validators in the foreground",
        description="Start N validator processes on 127.0.0.1 and supervise them until Ctrl-C. "
        "A second run on the same data dir resumes the same chain.",
    )
    upp.add_argument(
        "--validators",
        type=_positive_int,
        metavar="N",
        help="number of validators (default: 4, or the existing genesis's count)",
    )
    upp.add_argument("--data-dir", default=".stele", metavar="DIR", help="(default: %(default)s)")
    upp.add_argument(
        "--http-port", type=_port, metavar="PORT", help="node i serves HTTP on PORT+i (default: 8080)"
    )
    upp.add_argument(
        "--p2p-port", type=_port, metavar="PORT", help="node i listens for peers on PORT+i (default: 7000)"
    )
    upp.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    upp.add_argument(
        "--ready-timeout",
        type=_positive_float,
        default=120.0,
        metavar="SECONDS",
        help="give up if no block is finalized in time (default: %(default)g)",
    )
    upp.set_defaults(func=cmd_up)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (CliError, KeyFileError, GenesisError, DevnetError) as e:
        _error(str(e))
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        _error(f"{e.strerror or e}{':' if where else ''}{where}")
    except Exception as e:
        if os.environ.get("STELE_DEBUG"):
            raise
        _error(f"unexpected {type(e).__name__}: {e} (set STELE_DEBUG=1 to see the traceback)")
    return 2


def _error(message: str) -> None:
    one_line = " ".join(message.split("\n"))
    print(f"{PROG}: error: {one_line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
