"""A local devnet: N validator processes on 127.0.0.1 sharing one genesis.

`stele up` uses this, and so can tests and benchmarks that want real node
processes. Layout under the data dir:

    genesis.json          shared by every node; its presence means "chain exists"
    node{i}/key.json      node i's validator key (0600)
    node{i}/node.log      node i's stdout+stderr (appended across restarts)
    node{i}/...           node i's own data dir (consensus/, events, ...)

Node i listens for HTTP on http_port+i and for P2P on p2p_port+i. A second run
on the same data dir reuses the keys and genesis, so the same chain resumes.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from adapters.keys import KeyFileError, generate_key, load_key, public_key, save_key
from consensus.files import atomic_write
from consensus.genesis import Genesis, GenesisError, ValidatorInfo
from consensus.types import MAX_VALIDATORS
from domain.rules import ChainRules

if TYPE_CHECKING:
    import httpx

HOST = "127.0.0.1"
CHAIN_ID = "stele-devnet"
DEFAULT_VALIDATORS = 4
DEFAULT_HTTP_PORT = 8080
DEFAULT_P2P_PORT = 7000
DEFAULT_DATA_DIR = ".stele"
GENESIS_FILE = "genesis.json"
KEY_FILE = "key.json"
LOG_FILE = "node.log"
LOCK_FILE = "devnet.lock"
ADMIN_TOKEN_FILE = "admin.token"
ADMIN_LOGIN = "admin"
ADMIN_EMAIL = "admin@stele.localhost"
ADMIN_TOKEN_ID = "genesis-admin"
#: The bootstrap admin's token may do everything its user may: site administration,
#: repositories (deleting them too), organizations and teams, keys, the profile.
ADMIN_SCOPES = ("admin:org", "admin:public_key", "delete_repo", "repo", "site_admin", "user")
STATUS_PATH = "/api/v1/status"

# The directory that holds the `api` package, so `python -m api.cli` works even
# when Stele is not pip-installed (e.g. tests run from a checkout).
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1


class DevnetError(Exception):
    """The devnet cannot be set up, started or kept running; the message says why."""


class NodeExitedError(DevnetError):
    """A node process exited without being asked to."""

    def __init__(self, node: DevnetNode, returncode: int) -> None:
        self.node = node
        self.returncode = returncode
        super().__init__(f"{node.name} {describe_exit(returncode)}; see its log: {node.log_path}")


@dataclass(frozen=True)
class DevnetNode:
    """Where node i lives on disk and on the network."""

    index: int
    name: str
    dir: Path
    pubkey: bytes
    http_port: int
    p2p_port: int
    host: str = HOST

    @property
    def key_path(self) -> Path:
        return self.dir / KEY_FILE

    @property
    def log_path(self) -> Path:
        return self.dir / LOG_FILE

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


class Devnet:
    """Supervises the node processes of one devnet data dir.

    Create it with `Devnet.init(...)`, then `start()`, `wait_ready()`, and finally
    `stop()` (or use it as a context manager, which stops on exit).
    """

    def __init__(
        self,
        data_dir: Path,
        genesis: Genesis,
        nodes: Sequence[DevnetNode],
        *,
        log_level: str = "info",
        die_with_parent: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.genesis = genesis
        self.nodes: tuple[DevnetNode, ...] = tuple(nodes)
        self.log_level = log_level
        # Ask Linux to SIGTERM each node if this process dies, even by SIGKILL.
        # Note: this fires when the *thread* that called start() exits.
        self.die_with_parent = die_with_parent
        self._procs: list[subprocess.Popen[bytes] | None] = [None] * len(self.nodes)
        self._expected_exit: set[int] = set()
        self._lock_fd: int | None = None

    # ---- setup -------------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        data_dir: str | os.PathLike[str],
        n: int | None = None,
        http_port: int | None = None,
        p2p_port: int | None = None,
        *,
        log_level: str = "info",
        die_with_parent: bool = True,
    ) -> Devnet:
        """Create keys and genesis on first use, or reuse them (same chain) afterwards.

        Arguments left as None take the existing genesis's values, or the defaults
        (4 validators, HTTP 8080, P2P 7000) for a new devnet. Explicit values that
        contradict an existing genesis are an error rather than a silent new chain.
        """
        d = Path(data_dir).absolute()
        gpath = d / GENESIS_FILE
        if gpath.exists():
            nodes, genesis = _load_existing(d, gpath, n, http_port, p2p_port)
        else:
            nodes, genesis = _create_new(
                d,
                DEFAULT_VALIDATORS if n is None else n,
                DEFAULT_HTTP_PORT if http_port is None else http_port,
                DEFAULT_P2P_PORT if p2p_port is None else p2p_port,
            )
        return cls(d, genesis, nodes, log_level=log_level, die_with_parent=die_with_parent)

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def genesis_path(self) -> Path:
        return self.data_dir / GENESIS_FILE

    def url(self, i: int) -> str:
        return self.nodes[i].url

    def admin_token(self) -> str | None:
        """The bootstrap admin's API token, if this devnet created one."""
        path = self.data_dir / ADMIN_TOKEN_FILE
        return path.read_text().strip() if path.exists() else None

    def check_ports(self, indices: Sequence[int] | None = None) -> None:
        """Fail early, naming every busy port, instead of letting nodes crash one by one."""
        busy: list[str] = []
        for i in range(self.n) if indices is None else indices:
            node = self.nodes[i]
            for kind, port in (("HTTP", node.http_port), ("P2P", node.p2p_port)):
                if not port_is_free(node.host, port):
                    busy.append(f"{port} ({node.name} {kind})")
        if busy:
            raise DevnetError(
                f"port(s) already in use on {HOST}: {', '.join(busy)}; stop whatever holds them "
                "(another `stele up`?) or choose other ports with --http-port/--p2p-port and a new --data-dir"
            )

    # ---- processes ---------------------------------------------------------------------

    def start(self) -> None:
        """Launch every node. Raises DevnetError if ports are busy or it is already running."""
        if any(p is not None and p.poll() is None for p in self._procs):
            raise DevnetError("this devnet is already running")
        self._acquire_lock()
        try:
            self.check_ports()
            for i in range(self.n):
                self.start_node(i)
        except BaseException:
            self.stop(grace=2.0)
            raise

    def start_node(self, i: int) -> None:
        """Launch node i (it must not be running)."""
        if self.is_running(i):
            raise DevnetError(f"{self.nodes[i].name} is already running")
        node = self.nodes[i]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_SOURCE_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("STELE_DEBUG", "1")  # a crashing node should leave a traceback in its log
        node.dir.mkdir(parents=True, exist_ok=True)
        with open(node.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            log.write(f"--- stele devnet: starting {node.name} at {stamp} ---\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    self.node_command(i),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=node.dir,
                    env=env,
                    start_new_session=True,  # Ctrl-C reaches only the supervisor, which stops nodes in order
                    preexec_fn=_pdeathsig_setter() if self.die_with_parent else None,
                )
            except OSError as e:
                raise DevnetError(f"cannot start {node.name}: {e}") from None
        self._procs[i] = proc
        self._expected_exit.discard(i)

    def node_command(self, i: int) -> list[str]:
        node = self.nodes[i]
        return [
            sys.executable,
            "-m",
            "api.cli",
            "node",
            "run",
            "--data-dir",
            str(node.dir),
            "--genesis",
            str(self.genesis_path),
            "--key",
            str(node.key_path),
            "--http-port",
            str(node.http_port),
            "--p2p-port",
            str(node.p2p_port),
            "--host",
            node.host,
            "--log-level",
            self.log_level,
        ]

    def pid(self, i: int) -> int | None:
        p = self._procs[i]
        return None if p is None else p.pid

    def is_running(self, i: int) -> bool:
        p = self._procs[i]
        return p is not None and p.poll() is None

    def exited(self) -> dict[int, int]:
        """Nodes that exited on their own (not via kill/stop): index -> exit code."""
        out: dict[int, int] = {}
        for i, p in enumerate(self._procs):
            if p is not None and i not in self._expected_exit:
                rc = p.poll()
                if rc is not None:
                    out[i] = rc
        return out

    def kill(self, i: int) -> None:
        """SIGKILL node i, like a crash or power loss (for tests)."""
        p = self._procs[i]
        self._expected_exit.add(i)
        if p is None:
            return
        _signal_group(p, signal.SIGKILL)
        p.wait()

    def restart(self, i: int, grace: float = 10.0) -> None:
        """Stop node i if it is running (SIGTERM, then SIGKILL after `grace`) and start it again."""
        p = self._procs[i]
        self._expected_exit.add(i)
        if p is not None and p.poll() is None:
            _terminate([p], grace, None)
        self.start_node(i)

    def stop(self, grace: float = 10.0, *, force: threading.Event | None = None) -> None:
        """SIGTERM every node, SIGKILL any still alive after `grace` seconds (or once `force` is set)."""
        self._expected_exit.update(range(self.n))
        procs = [p for p in self._procs if p is not None]
        _terminate(procs, grace, force)
        self._release_lock()

    def __enter__(self) -> Devnet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- readiness ---------------------------------------------------------------------

    def status(self, i: int, timeout: float = 2.0) -> dict[str, Any] | None:
        """Node i's /api/v1/status JSON, or None if it does not answer (yet)."""
        import httpx

        with httpx.Client(timeout=timeout) as client:
            return _fetch_status(client, self.nodes[i])

    def wait_ready(
        self,
        timeout: float = 60.0,
        *,
        min_height: int = 1,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> bool:
        """Block until every node reports finalized_height >= min_height.

        Returns True when ready, False if `cancel` was set first. Raises
        NodeExitedError if a node dies meanwhile and DevnetError on timeout.
        `progress(ready, total)` is called whenever the count of ready nodes changes.
        """
        import httpx

        deadline = time.monotonic() + timeout
        ready: set[int] = set()
        reported = -1
        with httpx.Client(timeout=1.0) as client:
            while True:
                dead = self.exited()
                if dead:
                    i = min(dead)
                    raise NodeExitedError(self.nodes[i], dead[i])
                for i in range(self.n):
                    if i not in ready:
                        h = finalized_height(_fetch_status(client, self.nodes[i]))
                        if h is not None and h >= min_height:
                            ready.add(i)
                if progress is not None and len(ready) != reported:
                    progress(len(ready), self.n)
                reported = len(ready)
                if len(ready) == self.n:
                    return True
                if cancel is not None and cancel.is_set():
                    return False
                if time.monotonic() >= deadline:
                    waiting = ", ".join(n.name for n in self.nodes if n.index not in ready)
                    raise DevnetError(
                        f"no finalized block after {timeout:g}s ({len(ready)}/{self.n} nodes ready; "
                        f"still waiting for {waiting}); see the node.log files under {self.data_dir}"
                    )
                if cancel is not None:
                    cancel.wait(0.25)
                else:
                    time.sleep(0.25)

    # ---- single-supervisor lock --------------------------------------------------------

    def _acquire_lock(self) -> None:
        if self._lock_fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DevnetError(f"another devnet supervisor is already running on {self.data_dir}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None


# ---- `stele up` -------------------------------------------------------------------------


def up(
    data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
    n: int | None = None,
    http_port: int | None = None,
    p2p_port: int | None = None,
    *,
    log_level: str = "info",
    ready_timeout: float = 120.0,
    stop_grace: float = 10.0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run a devnet in the foreground until Ctrl-C/SIGTERM (exit 0) or a node dies (exit 1).

    Setup problems (bad arguments, busy ports, broken data dir) raise DevnetError,
    KeyFileError or GenesisError before any node starts.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    stop_requested = threading.Event()
    force = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # First signal: stop gracefully. Second: stop now.
        if stop_requested.is_set():
            force.set()
        else:
            stop_requested.set()

    previous = _install_handlers(on_signal)
    try:
        net = Devnet.init(data_dir, n, http_port, p2p_port, log_level=log_level)
        _say(out, f"stele devnet: {net.n} validator(s), chain {net.genesis.chain_id}")
        _say(out, f"data dir: {net.data_dir}")
        _say(out, f"genesis:  {net.genesis_path} (hash {net.genesis.hash().hex()[:16]})")
        if stop_requested.is_set():
            return 0
        net.start()
        try:
            for node in net.nodes:
                _say(out, f"{node.name:<6} {node.url:<24} {node.pubkey.hex()[:16]}")

            def show(ready: int, total: int) -> None:
                _say(out, f"waiting for first finalized block… {ready}/{total} nodes ready")

            try:
                ready = net.wait_ready(ready_timeout, progress=show, cancel=stop_requested)
            except NodeExitedError as e:
                _report_exit(err, e)
                return 1
            except DevnetError as e:
                _say(err, f"stele up: {e}")
                return 1
            if ready:
                token = net.admin_token()
                if token is not None:
                    _say(out, f"admin token ({ADMIN_LOGIN}): {token}")
                    _say(out, f"  saved in {net.data_dir / ADMIN_TOKEN_FILE}; try:")
                    _say(out, f"  curl -H 'Authorization: token {token}' {net.url(0)}/api/v3/user")
                _say(out, "devnet is up. Press Ctrl-C to stop.")
            while not stop_requested.wait(0.5):
                dead = net.exited()
                if dead:
                    i = min(dead)
                    _report_exit(err, NodeExitedError(net.nodes[i], dead[i]))
                    return 1
            _say(out, "stopping nodes… (press Ctrl-C again to force)")
            return 0
        finally:
            net.stop(stop_grace, force=force)
            _say(out, "all nodes stopped.")
    finally:
        _restore_handlers(previous)


def _report_exit(err: TextIO, e: NodeExitedError) -> None:
    _say(err, f"stele up: {e}; stopping the other nodes")
    tail = _tail(e.node.log_path, 15)
    if tail:
        _say(err, f"--- last lines of {e.node.log_path} ---")
        for line in tail:
            _say(err, "  " + line)


# ---- helpers ----------------------------------------------------------------------------


def finalized_height(status: object) -> int | None:
    """The `finalized_height` field of a status response, if present."""
    if isinstance(status, dict):
        h = status.get("finalized_height")
        if isinstance(h, int) and not isinstance(h, bool):
            return h
    return None


def port_is_free(host: str, port: int) -> bool:
    """Can a server bind host:port right now? (SO_REUSEADDR, as servers use it.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited unexpectedly with code {returncode}"


def _load_existing(
    d: Path, gpath: Path, n: int | None, http_port: int | None, p2p_port: int | None
) -> tuple[list[DevnetNode], Genesis]:
    try:
        genesis = Genesis.load(gpath)
    except GenesisError as e:
        raise DevnetError(f"{e}; fix it or delete {d} to start a new devnet") from None
    if n is not None and n != genesis.n:
        raise DevnetError(
            f"{gpath} has {genesis.n} validator(s) but --validators {n} was given; "
            f"use --validators {genesis.n} to resume this chain, or delete {d} to start a new one"
        )
    nodes: list[DevnetNode] = []
    for i in range(genesis.n):
        ndir = d / f"node{i}"
        try:
            pub = public_key(load_key(ndir / KEY_FILE))
        except KeyFileError as e:
            raise DevnetError(f"{e}; the devnet in {d} is incomplete, delete it to start over") from None
        idx = genesis.index_of(pub)
        if idx is None:
            raise DevnetError(f"{ndir / KEY_FILE} is not a validator in {gpath}; delete {d} to start over")
        v = genesis.validators[idx]
        nodes.append(DevnetNode(i, f"node{i}", ndir, pub, v.http_port, v.p2p_port, v.host))
    for flag, given, actual in (
        ("--http-port", http_port, nodes[0].http_port),
        ("--p2p-port", p2p_port, nodes[0].p2p_port),
    ):
        if given is not None and given != actual:
            raise DevnetError(
                f"the devnet in {d} uses {flag} {actual}; omit {flag} to resume it, "
                f"or delete {d} (or pick another --data-dir) to start a new chain on {given}"
            )
    return nodes, genesis


def _create_new(d: Path, n: int, http_port: int, p2p_port: int) -> tuple[list[DevnetNode], Genesis]:
    if not 1 <= n <= MAX_VALIDATORS:
        raise DevnetError(f"--validators must be between 1 and {MAX_VALIDATORS}, got {n}")
    for flag, base in (("--http-port", http_port), ("--p2p-port", p2p_port)):
        if not 1 <= base <= 65535 - (n - 1):
            raise DevnetError(f"{flag} {base} leaves no room for {n} consecutive ports below 65536")
    if http_port < p2p_port + n and p2p_port < http_port + n:
        raise DevnetError(
            f"HTTP ports {http_port}-{http_port + n - 1} overlap P2P ports {p2p_port}-{p2p_port + n - 1}"
        )
    vals: list[ValidatorInfo] = []
    nodes: list[DevnetNode] = []
    for i in range(n):
        ndir = d / f"node{i}"
        kpath = ndir / KEY_FILE
        # A key left by an interrupted earlier init is reused rather than replaced.
        seed = load_key(kpath) if kpath.exists() else None
        if seed is None:
            seed = generate_key()
            save_key(kpath, seed, overwrite=False)
        os.chmod(ndir, 0o700)
        pub = public_key(seed)
        vals.append(ValidatorInfo(f"node{i}", pub, HOST, p2p_port + i, http_port + i))
        nodes.append(DevnetNode(i, f"node{i}", ndir, pub, http_port + i, p2p_port + i))
    # The bootstrap site admin: only the token's hash goes into genesis (and so the log).
    from api.auth import new_token, token_hash  # imported late: keeps CLI start-up light

    token_path = d / ADMIN_TOKEN_FILE
    if token_path.exists():
        token = token_path.read_text().strip()
    else:
        token, _ = new_token()
        atomic_write(token_path, (token + "\n").encode(), 0o600)
    admin = {
        "login": ADMIN_LOGIN,
        "email": ADMIN_EMAIL,
        "token_hash": token_hash(token),
        "token_id": ADMIN_TOKEN_ID,
        "scopes": list(ADMIN_SCOPES),
    }
    extra = {"admin": admin, "protocol": ChainRules.latest().to_json()}
    genesis = Genesis(CHAIN_ID, int(time.time() * 1000), tuple(vals), extra)
    genesis.save(d / GENESIS_FILE)  # written last: its presence marks a complete init
    return nodes, genesis


def _fetch_status(client: httpx.Client, node: DevnetNode) -> dict[str, Any] | None:
    import httpx

    try:
        r = client.get(node.url + STATUS_PATH)
        if r.status_code != 200:
            return None
        body = r.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


def _signal_group(p: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    """Signal the node's whole process group (it runs in its own session)."""
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


def _terminate(procs: Sequence[subprocess.Popen[bytes]], grace: float, force: threading.Event | None) -> None:
    for p in procs:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        if force is not None and force.is_set():
            break
        time.sleep(0.05)
    for p in procs:
        _signal_group(p, signal.SIGKILL)
    for p in procs:
        p.wait()


def _pdeathsig_setter() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_pdeathsig() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_pdeathsig


_Handler = Callable[[int, FrameType | None], Any] | int | None


def _install_handlers(handler: Callable[[int, FrameType | None], None]) -> dict[int, _Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[int, _Handler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: dict[int, _Handler]) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


def _say(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()


def _tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read()
    except OSError:
        return []
    return data.decode("utf-8", "replace").splitlines()[-lines:]
