"""Git smart HTTP on every node: `/{owner}/{repo}.git/...`, also at `/git/{owner}/{repo}/...`.

- `GET info/refs?service=git-upload-pack`, `POST git-upload-pack`: fetch and clone, served
  by C git's `git upload-pack --stateless-rpc` over the node's bare repository (protocol
  v0 and v2, the client's `Git-Protocol` header passed on as `GIT_PROTOCOL`), the response
  streamed as git writes it. Without a `git` binary, dulwich's `UploadPackHandler`
  answers instead (protocol v0, buffered).
- `GET info/refs?service=git-receive-pack`, `POST git-receive-pack`: push. The refs are
  advertised from the ledger's state (what a push's compare-and-swap is checked
  against). The request body is spooled to a file and handed to
  `adapters.git.receive.ReceivePack`, which reads the commands, quarantines the pack and
  lets the ledger decide (`api.push.PushService`); its answer, git's report-status, is
  streamed back as it is produced.

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
import tempfile
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from io import BytesIO
from typing import IO

from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo as DulwichRepo
from dulwich.server import BackendRepo, DictBackend, UploadPackHandler
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from adapters.git.protocol import MAX_COMMANDS_BYTES, advertise_receive_refs, service_preamble
from adapters.git.receive import MalformedPush, ReceivePack
from adapters.git.store import GitStore
from api.auth import Caller, authenticate
from api.errors import ApiError
from api.services import services
from api.settings import GitHttpConfig
from commands import scopes
from domain.permissions import WRITE, effective_permission, rank
from domain.records import Repo
from domain.state import LedgerState

log = logging.getLogger(__name__)

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
MIN_POSITION_WAIT_S = 10.0
CATCH_UP_WAIT_S = 5.0


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
            state = ctx.state
            refs = state.refs(ctx.repo.repo_id)
            head = f"refs/heads/{ctx.repo.default_branch}"
            body = service_preamble(service) + advertise_receive_refs(refs, head)
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
        pushes = services(request).pushes
        if pushes is None:
            raise GitHttpError(503, "pushes are not enabled on this node")
        handler = ReceivePack(
            ctx.store,
            ctx.repo.repo_id,
            pushes.decider(ctx.caller, ctx.repo),
            max_pack_bytes=ctx.config.max_pack_bytes,
            fsck=ctx.config.fsck,
        )
        spool = tempfile.TemporaryFile(dir=ctx.store.tmp_dir, prefix="push-")
    except GitHttpError as exc:
        return exc.response()
    try:
        too_large = await _spool_body(request, spool, ctx.config.max_pack_bytes + MAX_COMMANDS_BYTES)
        spool.seek(0)
        unpacked = await asyncio.to_thread(handler.unpack, spool, too_large)
    except GitHttpError as exc:
        return exc.response()
    except MalformedPush as exc:
        return GitHttpError(400, str(exc)).response()
    finally:
        spool.close()
    if not unpacked.commands.updates:
        return Response(b"", media_type="application/x-git-receive-pack-result", headers=NO_CACHE)
    return StreamingResponse(
        handler.respond(unpacked), media_type="application/x-git-receive-pack-result", headers=NO_CACHE
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
    state: LedgerState


async def _caught_up(request: Request) -> None:
    """Serve refs only from a node that has applied what it knows is final.

    With `X-Stele-Min-Position: P` (e.g. `git -c http.extraHeader=...`, P from the push's
    "decided at log position P") the read waits for P, or answers 504. Without it, the
    read waits (briefly) until this node has applied every block it knows is finalized,
    e.g. one waiting for a pack still being fetched.
    """
    node = services(request)
    ledger = node.ledger
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
    finalized = node.host.replica.finalized_height
    if finalized > ledger.height:
        await ledger.wait_height(finalized, CATCH_UP_WAIT_S)


def _access(request: Request, owner: str, name: str, *, push: bool) -> _Context:
    node = services(request)
    store = node.git
    if store is None:
        raise GitHttpError(503, "git is not enabled on this node")
    ledger = node.ledger
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
    try:
        node.reads.git(record.repo_id)  # 503 while this node repairs its copy
    except ApiError as exc:
        raise GitHttpError(exc.status, exc.message, exc.headers) from None
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
    return _Context(store, node.settings.git, caller, record, str(path), state)


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
