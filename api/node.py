"""The node process: consensus host, P2P and the HTTP API in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from adapters.blob_sync import BlobSync
from adapters.consensus_host import ConsensusHost, HostConfig, NodeHalt
from adapters.git.pack_blobs import PackBlobs
from adapters.git.store import GitStore
from adapters.keys import KeyFileError, load_key, public_key
from adapters.ledger import LedgerHost
from api.app import create_app
from api.metrics import NodeMetrics
from api.settings import NodeSettings
from consensus.genesis import Genesis, GenesisError
from consensus.types import Block
from domain.rules import ChainRules

log = logging.getLogger("stele.node")


@dataclass(frozen=True)
class NodeOptions:
    data_dir: Path
    genesis_path: Path
    key_path: Path
    http_host: str
    http_port: int
    p2p_host: str
    p2p_port: int
    log_level: str = "info"
    # None: SQLite at <data-dir>/events.sqlite; or a postgresql:// URL.
    event_store_url: str | None = None


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the node owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class NodeStartError(Exception):
    """A configuration problem reported to the operator in one line."""


def _load(opts: NodeOptions) -> tuple[Genesis, bytes]:
    try:
        genesis = Genesis.load(opts.genesis_path)
        seed = load_key(opts.key_path)
    except (GenesisError, KeyFileError) as exc:
        raise NodeStartError(str(exc)) from None
    if genesis.index_of(public_key(seed)) is None:
        raise NodeStartError(f"key {opts.key_path} is not one of the validators in {opts.genesis_path}")
    return genesis, seed


async def serve(opts: NodeOptions, stop: asyncio.Event, host_config: HostConfig = HostConfig()) -> None:
    genesis, seed = _load(opts)
    opts.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        settings = NodeSettings.from_env()
        rules = ChainRules.from_genesis(genesis.extra)
    except ValueError as exc:
        raise NodeStartError(str(exc)) from None
    # The ledger refuses objects over the chain's limit; refusing them on receipt too keeps a
    # bomb out of memory (a node with a lower limit would fail to hold packs the chain accepts).
    git_store = GitStore(
        opts.data_dir / "git",
        max_pack_bytes=settings.git.max_pack_bytes,
        max_object_bytes=rules.max_object_bytes,
    )
    wiring = _Wiring(asyncio.get_running_loop())
    try:
        ledger = LedgerHost(
            genesis=genesis,
            data_dir=opts.data_dir,
            event_store_url=opts.event_store_url,
            git=git_store,
            ports=wiring,
        )
    except (NodeHalt, ValueError) as exc:
        raise NodeStartError(str(exc)) from None
    halted: list[NodeHalt] = []

    def on_halt(halt: NodeHalt) -> None:
        halted.append(halt)
        stop.set()

    host = ConsensusHost(
        genesis=genesis,
        seed=seed,
        data_dir=opts.data_dir,
        p2p_host=opts.p2p_host,
        p2p_port=opts.p2p_port,
        config=host_config,
        on_finalized=ledger.on_finalized,
        app_hash=ledger.app_hash_for_child,
        on_halt=on_halt,
        admit=ledger.admit,
        available=ledger.block_available,
        tx_ready=ledger.tx_available,
    )
    blobs = _pack_sync(opts, git_store, host, ledger)
    wiring.host, wiring.blobs = host, blobs
    try:
        ledger.recover(host.store, lambda h, top: log.info("replaying the ledger: %d/%d blocks", h, top))
    except NodeHalt as exc:
        ledger.close()
        raise NodeStartError(f"ledger recovery failed: {exc}") from None
    ledger.start(asyncio.get_running_loop())  # from now on blocks run on the ledger's worker
    if ledger.repairs is not None:
        marked = ledger.check_repositories()
        if marked:
            log.warning("%d repositories differ from the ledger on disk; repairing them", marked)
    metrics = NodeMetrics(host, ledger)
    app = create_app(
        host,
        metrics,
        ledger,
        seed,
        git_store=git_store,
        offer_pack=blobs.offer,
        pack_replicated=blobs.wait_holders,
        settings=settings,
    )
    config = uvicorn.Config(
        app,
        host=opts.http_host,
        port=opts.http_port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = _Server(config)
    try:
        await host.start()
    except OSError as exc:
        await host.stop()
        raise NodeStartError(
            f"cannot listen for P2P on {opts.p2p_host}:{opts.p2p_port}: {exc.strerror}"
        ) from None
    http_task = asyncio.create_task(server.serve())
    repair_task = asyncio.create_task(ledger.repairs.run()) if ledger.repairs is not None else None
    log.info(
        "node %d (%s) of chain %s: http://%s:%d p2p %s:%d, finalized height %d",
        host.index,
        host.signer.pubkey.hex()[:16],
        genesis.chain_id,
        opts.http_host,
        opts.http_port,
        opts.p2p_host,
        opts.p2p_port,
        host.replica.finalized_height,
    )
    stop_task = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({http_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if http_task in done:
            failure = http_task.exception()
            if failure is not None or not server.started:
                raise NodeStartError(
                    f"HTTP server on {opts.http_host}:{opts.http_port} stopped or failed to start"
                )
    finally:
        server.should_exit = True
        stop_task.cancel()
        if repair_task is not None:
            repair_task.cancel()
            with contextlib.suppress(BaseException):
                await repair_task
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(http_task, 5)
        await blobs.stop()
        await host.stop()
        ledger.close()
        log.info("node stopped at finalized height %d", host.replica.finalized_height)
    if halted:
        raise NodeStartError(f"node halted: {halted[0]}")


def _pack_sync(opts: NodeOptions, git: GitStore, host: ConsensusHost, ledger: LedgerHost) -> BlobSync:
    """Packs between validators: fetched when a block needs them, offered after a local push."""

    def ready(digest: str) -> None:
        ledger.pack_ready(digest)  # finalized blocks that waited for it are applied now
        host.app_ready()  # and proposals waiting for it can be voted on
        if ledger.repairs is not None:
            ledger.repairs.wake()  # a repair may have waited for this pack

    blobs = BlobSync(
        source=PackBlobs(git),
        send=host.send_to,
        peers=lambda: sorted(host.p2p.connected()),
        tmp_dir=opts.data_dir / "blobs.tmp",
        max_blob_bytes=git.max_pack_bytes,
        on_ready=ready,
        queued_bytes=host.p2p.queued_bytes,
    )
    host.blob_handler = blobs.on_message
    return blobs


class _Wiring:
    """What the ledger needs from consensus and the blob sync, which in turn need the ledger.

    The ledger is built first (its callbacks go to consensus), then consensus and the blob
    sync, and they are set here before anything runs: the one place the cycle is closed.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.host: ConsensusHost | None = None
        self.blobs: BlobSync | None = None

    def block(self, block_hash: bytes) -> Block | None:
        return self.host.replica.blocks.get(block_hash) if self.host is not None else None

    def want_pack(self, digest: str) -> None:
        if self.blobs is not None:
            self.blobs.want(digest)

    def evict_tx(self, raw: bytes) -> None:
        if self.host is not None:
            # Later, not now: the leader asks while iterating the mempool.
            self.loop.call_soon(self.host.mempool.discard, raw)

    def app_ready(self) -> None:
        if self.host is not None:
            self.host.app_ready()

    def halt(self, halt: NodeHalt) -> None:
        if self.host is not None:
            self.host.halt(halt)


def run_node(opts: NodeOptions) -> int:
    """Run until SIGINT/SIGTERM; return the process exit code."""
    logging.basicConfig(
        level=getattr(logging, opts.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(opts, stop)

    try:
        asyncio.run(main())
    except NodeStartError as exc:
        print(f"stele: {exc}", file=sys.stderr)
        return 2
    return 0
