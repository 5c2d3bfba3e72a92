"""Git smart HTTP on every node: `/{owner}/{repo}.git/...`, also at `/git/{owner}/{repo}/...`.

- `GET info/refs?service=git-upload-pack`, `POST git-upload-pack`: fetch and clone, served
  by C git's `git upload-pack --stateless-rpc` over the node's bare repository (protocol
  v0 and v2, the client's `Git-Protocol` header passed on as `GIT_PROTOCOL`), the response
  streamed as git writes it. Without a `git` binary, dulwich's `UploadPackHandler`
  answers instead (protocol v0, buffered).
- `GET info/refs?service=git-receive-pack`, `POST git-receive-pack`: push. The ref update
  commands are read with dulwich's pkt-line helpers, the pack is validated, completed and
  quarantined by `adapters.git.packs.receive_pack` (nothing becomes visible), and then
  `request.app.state.push_handler` decides (see `PushHandler`): the ledger, once it is
  wired, turns the push into a `PushRefs` transaction and answers after it is final.
  With no handler the node says so honestly: `ng <ref> pushes are not enabled on this
  node`. The answer is git's report-status (`unpack ok|<error>`, `ok <ref>` /
  `ng <ref> <reason>`), side-band-64k multiplexed when the client asks for it.

Access, judged against the node's finalized state: a token as the HTTP Basic password
(any user name) or `Authorization: token <t>`. Public repositories are readable
anonymously. A repository the caller may not read answers 404 to an authenticated
caller; to an anonymous one it answers 401 with `WWW-Authenticate: Basic realm="Stele"`
(so git sends the credentials it has, or asks for them), which is also what an
unknown repository answers anonymously, so that a private repository's existence does
not leak. Pushing needs write permission (401 anonymously, 403 otherwise); the ledger
checks it again at apply time.

Bodies are streamed; `Content-Encoding: gzip` request bodies (git gzips large fetch
negotiations) are inflated on the fly, with the size limits applied to the inflated
bytes. The ASGI server has already removed any chunked transfer coding. A pack over
the configured limit is refused with `unpack pack exceeds the maximum size of ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any, BinaryIO

from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import BackendRepo, DictBackend, UploadPackHandler
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from adapters.git.packs import PackRejected, PackTooLarge, ReceivedPack, receive_pack
from adapters.git.protocol import (
    MAX_COMMANDS_BYTES,
    ProtocolViolation,
    PushCommands,
    RefUpdate,
    advertise_receive_refs,
    progress_message,
    read_commands,
    report_status,
    service_preamble,
)
from adapters.git.store import DEFAULT_MAX_PACK_BYTES, GitStore
from adapters.ledger import LedgerHost
from api.auth import Caller, authenticate
from api.errors import ApiError
from api.v3.contents import REPAIRING_MESSAGE
from commands import scopes
from domain.permissions import WRITE, effective_permission, rank
from domain.records import Repo

log = logging.getLogger(__name__)

#: `push_handler(caller, repo, commands, received_pack) -> [(ref, None | reason)]`, set as
#: `app.state.push_handler`. `received_pack` is None when the request carried no pack (only
#: deletions, or refs moved to objects the repository already has). Each result answers one
#: command: None is `ok <ref>`, a string is `ng <ref> <reason>`. Called only with commands
#: that passed the early checks (ref names, objects present, write permission).
PushHandler = Callable[
    [Caller, Repo, Sequence[RefUpdate], ReceivedPack | None, bool], Awaitable[list[tuple[str, str | None]]]
]

PUSH_DISABLED = "pushes are not enabled on this node"
REALM_HEADER = {"WWW-Authenticate": 'Basic realm="Stele"'}
NO_CACHE = {
    "Cache-Control": "no-cache, max-age=0, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Fri, 01 Jan 1980 00:00:00 GMT",
}
UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"
_GIT_PROTOCOL = re.compile(r"^[A-Za-z0-9=:.,_-]{1,128}$")
_CHUNK = 64 * 1024
_PIPE_BUFFER = 1024 * 1024  # git's output is read and sent in pieces of up to this size
_KEEPALIVE_S = 5.0
MIN_POSITION_WAIT_S = 10.0
CATCH_UP_WAIT_S = 5.0


@dataclass(frozen=True)
class GitHttpConfig:
    """Limits and tools of the git endpoints; set `app.state.git_http` to override."""

    max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES
    #: The largest (inflated) fetch negotiation request accepted.
    max_upload_request_bytes: int = 64 * 1024 * 1024
    #: The C git used for fetches; None: dulwich serves them.
    git_binary: str | None = shutil.which("git")
    #: Check every received commit, tree and tag (git's fsck rules).
    fsck: bool = True


class GitHttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> Response:
        return PlainTextResponse(self.message + "\n", status_code=self.status, headers=self.headers)


router = APIRouter(include_in_schema=False)


# ---------------------------------------------------------------------------- routes


async def info_refs(request: Request, owner: str, repo: str) -> Response:
    service = request.query_params.get("service")
    try:
        if service not in (UPLOAD_PACK, RECEIVE_PACK):
            raise GitHttpError(403, "Stele serves git's smart HTTP protocol only; use git 1.6.6 or later")
        await _caught_up(request)
        ctx = _access(request, owner, repo, push=service == RECEIVE_PACK)
        content_type = f"application/x-{service}-advertisement"
        if service == RECEIVE_PACK:
            refs = sorted(ctx.store.refs(ctx.repo.repo_id).items())
            body = service_preamble(service) + advertise_receive_refs(refs, ctx.store.head(ctx.repo.repo_id))
            return Response(body, media_type=content_type, headers=NO_CACHE)
        version = _git_protocol(request)
        if ctx.config.git_binary is None:
            body = service_preamble(service) + await asyncio.to_thread(_dulwich_upload_pack, ctx, None)
        else:
            out = await _run_git(
                ctx.config.git_binary, ["upload-pack", "--stateless-rpc", "--advertise-refs"], ctx, version
            )
            body = out if version is not None and "version=2" in version else service_preamble(service) + out
        return Response(body, media_type=content_type, headers=NO_CACHE)
    except GitHttpError as exc:
        return exc.response()


async def upload_pack(request: Request, owner: str, repo: str) -> Response:
    try:
        await _caught_up(request)
        ctx = _access(request, owner, repo, push=False)
        _require_content_type(request, UPLOAD_PACK)
        body = await _read_body(request, ctx.config.max_upload_request_bytes)
        version = _git_protocol(request)
        content_type = "application/x-git-upload-pack-result"
        if ctx.config.git_binary is None:
            out = await asyncio.to_thread(_dulwich_upload_pack, ctx, body)
            return Response(out, media_type=content_type, headers=NO_CACHE)
        proc = await _spawn_git(ctx.config.git_binary, ["upload-pack", "--stateless-rpc"], ctx, version)
    except GitHttpError as exc:
        return exc.response()
    return StreamingResponse(_stream_process(proc, body), media_type=content_type, headers=NO_CACHE)


async def receive_pack_route(request: Request, owner: str, repo: str) -> Response:
    try:
        ctx = _access(request, owner, repo, push=True)
        _require_content_type(request, RECEIVE_PACK)
        assert ctx.caller is not None
        spool = tempfile.TemporaryFile(dir=ctx.store.tmp_dir, prefix="push-")
    except GitHttpError as exc:
        return exc.response()
    try:
        too_large = await _spool_body(request, spool, ctx.config.max_pack_bytes + MAX_COMMANDS_BYTES)
        spool.seek(0)
        outcome = await asyncio.to_thread(_unpack, ctx, spool, too_large)
    except GitHttpError as exc:
        return exc.response()
    finally:
        spool.close()
    if not outcome.commands.updates:
        return Response(b"", media_type="application/x-git-receive-pack-result", headers=NO_CACHE)
    return StreamingResponse(
        _push_result(request, ctx, outcome),
        media_type="application/x-git-receive-pack-result",
        headers=NO_CACHE,
    )


for _prefix in ("/{owner}/{repo}.git", "/git/{owner}/{repo}"):
    router.add_api_route(_prefix + "/info/refs", info_refs, methods=["GET"])
    router.add_api_route(_prefix + "/git-upload-pack", upload_pack, methods=["POST"])
    router.add_api_route(_prefix + "/git-receive-pack", receive_pack_route, methods=["POST"])


# ---------------------------------------------------------------------------- access


@dataclass(frozen=True)
class _Context:
    store: GitStore
    config: GitHttpConfig
    caller: Caller | None
    repo: Repo
    path: str


async def _caught_up(request: Request) -> None:
    """Serve refs only from a node that has applied what it knows is final.

    With `X-Stele-Min-Position: P` (e.g. `git -c http.extraHeader=...`, P from the push's
    "decided at log position P") the read waits for P, or answers 504. Without it, the
    read waits (briefly) until this node has applied every block it knows is finalized,
    e.g. one waiting for a pack still being fetched.
    """
    ledger: LedgerHost = request.app.state.ledger
    raw = request.headers.get("x-stele-min-position") or request.query_params.get("min_position")
    if raw is not None:
        if not raw.isdigit() or len(raw) > 18:
            raise GitHttpError(400, "X-Stele-Min-Position must be a non-negative integer")
        wanted = int(raw)
        if not await ledger.wait_height(wanted, MIN_POSITION_WAIT_S):
            raise GitHttpError(
                504,
                f"this node has applied position {ledger.height}, not yet {wanted}; "
                "retry, or ask another node",
                {"Retry-After": "1"},
            )
        return
    host = getattr(request.app.state, "host", None)
    finalized = getattr(getattr(host, "replica", None), "finalized_height", None)
    if isinstance(finalized, int) and finalized > ledger.height:
        await ledger.wait_height(finalized, CATCH_UP_WAIT_S)


def _config(request: Request) -> GitHttpConfig:
    config = getattr(request.app.state, "git_http", None)
    return config if isinstance(config, GitHttpConfig) else GitHttpConfig()


def _access(request: Request, owner: str, name: str, *, push: bool) -> _Context:
    store = getattr(request.app.state, "git", None)
    if not isinstance(store, GitStore):
        raise GitHttpError(503, "git is not enabled on this node")
    ledger: LedgerHost = request.app.state.ledger
    state = ledger.state
    try:
        caller = authenticate(state, request.headers.get("authorization"))
    except ApiError:
        raise GitHttpError(401, "Bad credentials", REALM_HEADER) from None
    if name.endswith(".git"):
        name = name[: -len(".git")]
    record = state.repo_by_name(owner, name)
    user_id = caller.user.user_id if caller is not None else None
    permission = effective_permission(state, user_id, record.repo_id) if record is not None else None
    # Token scopes (commands.scopes) narrow this from protocol version 2: a private
    # repository is not found (404) by a token without `repo`, and a push needs `repo`, or
    # `public_repo` for a public repository (403 "Permission to ... denied"); the ledger
    # checks the push's scopes again at apply time.
    token_scopes = caller.token.scopes if caller is not None else None
    if token_scopes is not None and not ledger.rules.at(ledger.height + 1).token_scopes:
        token_scopes = None
    if record is not None and token_scopes is not None:
        if not scopes.can_read_repo(token_scopes, record.private):
            permission = None
    if record is None or permission is None:
        if caller is None:
            raise GitHttpError(401, "Authentication required", REALM_HEADER)
        raise GitHttpError(404, "Repository not found.")
    repairs = getattr(ledger, "repairs", None)
    if repairs is not None and repairs.needs_repair(record.repo_id):
        raise GitHttpError(503, REPAIRING_MESSAGE, {"Retry-After": "5"})
    if push and rank(permission) < rank(WRITE):
        if caller is None:
            raise GitHttpError(401, "Authentication required to push", REALM_HEADER)
        why = " (the repository is archived)" if record.archived else ""
        raise GitHttpError(403, f"Permission to {record.full_name}.git denied to {caller.user.login}{why}.")
    if push and caller is not None and token_scopes is not None:
        refused = scopes.push(record.private, record.full_name, caller.user.login).refusal(token_scopes)
        if refused is not None:
            raise GitHttpError(refused.code, refused.message)
    path = store.ensure_repo(record.repo_id, record.default_branch)
    _sync_head(store, record, path)
    return _Context(store, _config(request), caller, record, str(path))


def _sync_head(store: GitStore, record: Repo, path: os.PathLike[str]) -> None:
    """HEAD follows the finalized default branch (cheap check; the ledger also sets it)."""
    want = f"ref: refs/heads/{record.default_branch}\n"
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(path, "HEAD")) as f:
            if f.read() == want:
                return
        store.set_head(record.repo_id, record.default_branch)


def _require_content_type(request: Request, service: str) -> None:
    expected = f"application/x-{service}-request"
    if request.headers.get("content-type", "").split(";")[0].strip() != expected:
        raise GitHttpError(415, f"expected Content-Type: {expected}")


def _git_protocol(request: Request) -> str | None:
    value = request.headers.get("git-protocol")
    return value if value is not None and _GIT_PROTOCOL.match(value) else None


# ---------------------------------------------------------------------------- request bodies


async def _body_chunks(request: Request) -> AsyncIterator[bytes]:
    """The request body, inflated if it was gzipped (chunking is already undone by the server)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        async for chunk in request.stream():
            if chunk:
                yield chunk
        return
    if encoding not in ("gzip", "x-gzip"):
        raise GitHttpError(415, f"unsupported Content-Encoding: {encoding}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        async for chunk in request.stream():
            data = chunk
            while data and not inflater.eof:
                out = inflater.decompress(data, _CHUNK)
                if out:
                    yield out
                data = inflater.unconsumed_tail
        rest = inflater.flush()
    except zlib.error as exc:
        raise GitHttpError(400, f"the gzip request body is corrupt: {exc}") from None
    if rest:
        yield rest
    if not inflater.eof:
        raise GitHttpError(400, "the gzip request body is truncated")


async def _read_body(request: Request, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in _body_chunks(request):
        size += len(chunk)
        if size > limit:
            raise GitHttpError(413, f"request body exceeds {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def _spool_body(request: Request, spool: IO[bytes], limit: int) -> bool:
    """Write the body to `spool` up to `limit` bytes; True if it was longer (the rest is read and dropped).

    Reading the rest lets git see the report (`unpack pack exceeds ...`) instead of a reset
    connection; beyond twice the limit the node stops listening (413).
    """
    size = 0
    async for chunk in _body_chunks(request):
        if size + len(chunk) <= limit:
            spool.write(chunk)
        elif size <= limit:
            spool.write(chunk[: limit - size])
        size += len(chunk)
        if size > 2 * limit:
            raise GitHttpError(413, f"the push exceeds {limit} bytes")
    return size > limit


# ---------------------------------------------------------------------------- receive-pack


@dataclass(frozen=True)
class _Unpacked:
    commands: PushCommands
    pack: ReceivedPack | None
    unpack_error: str | None
    #: ref -> reason, for commands refused before the push handler sees them.
    refused: dict[str, str]


def _unpack(ctx: _Context, spool: BinaryIO, too_large: bool) -> _Unpacked:
    """Read the commands and quarantine the pack (in a worker thread)."""
    try:
        commands = read_commands(spool)
    except ProtocolViolation as exc:
        raise GitHttpError(400, f"malformed receive-pack request: {exc}") from None
    if not commands.updates:
        return _Unpacked(commands, None, None, {})
    if too_large:
        return _Unpacked(commands, None, str(PackTooLarge(ctx.config.max_pack_bytes)), {})
    pack: ReceivedPack | None = None
    start = spool.tell()
    has_pack = bool(spool.read(1))
    spool.seek(start)
    if has_pack:
        try:
            pack = receive_pack(
                ctx.store, ctx.repo.repo_id, spool, max_bytes=ctx.config.max_pack_bytes, fsck=ctx.config.fsck
            )
        except PackRejected as exc:
            return _Unpacked(commands, None, str(exc), {})
    # Ref names, objects and everything else are the ledger's to decide (its precheck
    # answers at once for what it would refuse).
    return _Unpacked(commands, pack, None, {})


async def _push_result(request: Request, ctx: _Context, outcome: _Unpacked) -> AsyncIterator[bytes]:
    commands = outcome.commands
    side_band = commands.side_band
    updates = commands.updates
    if outcome.unpack_error is not None:
        if side_band:
            yield progress_message(f"error: {outcome.unpack_error}\n")
        results: list[tuple[str, str | None]] = [(u.ref, "unpacker error") for u in updates]
        if commands.report_status:
            yield report_status(outcome.unpack_error, results, side_band=side_band)
        return
    verdicts: dict[str, str | None] = dict(outcome.refused)
    pending = [u for u in updates if u.ref not in verdicts]
    handler: PushHandler | None = getattr(request.app.state, "push_handler", None)
    if handler is None or not pending:
        verdicts.update((u.ref, PUSH_DISABLED) for u in pending)  # (none pending with a handler)
        if outcome.pack is not None and outcome.pack.created:
            ctx.store.discard_pack(outcome.pack.digest)  # no transaction will ever name it
    else:
        assert ctx.caller is not None
        if side_band and outcome.pack is not None and not commands.quiet:
            p = outcome.pack
            yield progress_message(
                f"Stele: pack sha256:{p.digest[:16]} ({p.object_count} objects) received\n"
            )
        task = asyncio.ensure_future(
            handler(ctx.caller, ctx.repo, tuple(pending), outcome.pack, commands.atomic)
        )
        _RUNNING.add(task)  # a client that hangs up does not cancel a push already submitted
        task.add_done_callback(_RUNNING.discard)
        while not task.done():
            await asyncio.wait({task}, timeout=_KEEPALIVE_S)
            if not task.done() and side_band:
                yield b"0005\x01"  # side-band keepalive: an empty data packet
        verdicts.update(_handler_verdicts(task, pending))
        position = getattr(task.result(), "position", None) if not task.exception() else None
        if side_band and position is not None and not commands.quiet:
            yield progress_message(f"Stele: decided at log position {position}\n")
    results = [(u.ref, verdicts.get(u.ref, "not processed")) for u in updates]
    if commands.report_status:
        yield report_status(None, results, side_band=side_band)


_RUNNING: set[asyncio.Future[Any]] = set()


def _handler_verdicts(
    task: asyncio.Future[list[tuple[str, str | None]]], pending: Sequence[RefUpdate]
) -> dict[str, str | None]:
    try:
        answered = dict(task.result())
    except Exception:
        log.exception("the push handler failed")
        return {u.ref: "internal error while processing the push" for u in pending}
    return {u.ref: answered[u.ref] if u.ref in answered else "no result for this ref" for u in pending}


# ---------------------------------------------------------------------------- upload-pack


async def _spawn_git(
    git: str, args: list[str], ctx: _Context, version: str | None
) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    if version is not None:
        env["GIT_PROTOCOL"] = version
    try:
        return await asyncio.create_subprocess_exec(
            git,
            *args,
            "--strict",
            ctx.path,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=_PIPE_BUFFER,
        )
    except OSError as exc:
        log.error("cannot run %s: %s", git, exc)
        raise GitHttpError(500, "git is unavailable on this node") from None


async def _run_git(git: str, args: list[str], ctx: _Context, version: str | None) -> bytes:
    proc = await _spawn_git(git, args, ctx, version)
    out, err = await proc.communicate(b"")
    if proc.returncode != 0:
        log.error("git %s failed (%s): %s", args[0], proc.returncode, err.decode(errors="replace")[:500])
        raise GitHttpError(500, "git failed to read the repository")
    return out


async def _stream_process(proc: asyncio.subprocess.Process, body: bytes) -> AsyncIterator[bytes]:
    """Feed `body` to the process and stream its stdout; kill it if the client goes away."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    async def feed() -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(body)
            await stdin.drain()
            stdin.close()

    async def drain_stderr() -> bytes:
        return await stderr.read()

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(drain_stderr())
    try:
        while chunk := await stdout.read(_PIPE_BUFFER):
            yield chunk
        await proc.wait()
        if proc.returncode != 0:
            message = (await errors).decode(errors="replace").strip()
            log.warning("git upload-pack exited with %s: %s", proc.returncode, message[:500])
    finally:
        feeder.cancel()
        errors.cancel()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _dulwich_upload_pack(ctx: _Context, body: bytes | None) -> bytes:
    """upload-pack by dulwich (protocol v0): the advertisement when `body` is None, else the response."""
    out = BytesIO()
    repo = DulwichRepo(ctx.path)
    try:
        repos: dict[str, BackendRepo] = {"/": repo}
        proto = ReceivableProtocol(BytesIO(body or b"").read, out.write)
        handler = UploadPackHandler(
            DictBackend(repos), ["/"], proto, stateless_rpc=True, advertise_refs=body is None
        )
        handler.handle()
    finally:
        repo.close()
    return out.getvalue()
