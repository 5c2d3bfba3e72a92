"""Expensive git reads over REST, kept within per-node limits: archives, large raw files, diffs.

An archive or a large file is streamed from a C git subprocess (`adapters.git.archive`),
so the node holds a few pieces of it at a time, never the whole; but each one still
costs a process, CPU and a connection for as long as the client takes. So:

- At most `GitReadConfig.concurrent` expensive reads run at once on a node; up to
  `queued` more wait (at most `queue_wait_s`) for a slot; beyond that, or after that
  wait, the answer is 503 with `Retry-After`.
- A streamed read is cut off after `time_limit_s`: its git process is killed and the
  connection closed without the end of the body (a chunked response without its last
  chunk, or a short one with its Content-Length), so the client sees a failed download,
  not a complete-looking truncated one.
- The process is always killed (if still running) and reaped, and the slot released,
  however the response ends: done, failed, timed out, or the client gone.

`GitReadConfig` (in the node's `NodeSettings.reads`) is the one place these limits are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from adapters.git.archive import git_env
from api.errors import ApiError
from api.settings import GitReadConfig, NodeSettings

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_STDERR_KEPT = 4096


class ReadSlots:
    """Admission of expensive reads on one node: `concurrent` at once, `queued` waiting."""

    def __init__(self, config: GitReadConfig) -> None:
        self.config = config
        self._free = asyncio.Semaphore(config.concurrent)
        self.active = 0
        self.waiting = 0

    def _busy(self) -> ApiError:
        return ApiError(
            503,
            "this node is busy serving archives, large files and diffs; retry shortly",
            {"Retry-After": str(self.config.retry_after_s)},
        )

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if there is room in it; 503 otherwise."""
        if self._free.locked():
            if self.waiting >= self.config.queued:
                raise self._busy()
            self.waiting += 1
            try:
                async with asyncio.timeout(self.config.queue_wait_s):
                    await self._free.acquire()
            except TimeoutError:
                raise self._busy() from None
            finally:
                self.waiting -= 1
        else:
            await self._free.acquire()
        self.active += 1

    def release(self) -> None:
        self.active -= 1
        self._free.release()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self.acquire()
        try:
            yield
        finally:
            self.release()


def read_limits(request: Request) -> tuple[GitReadConfig, ReadSlots]:
    """This node's configuration (`NodeSettings.reads`) and slots (made with the first read)."""
    state = request.app.state
    settings = getattr(state, "settings", None)
    config = settings.reads if isinstance(settings, NodeSettings) else GitReadConfig()
    slots = getattr(state, "git_read_slots", None)
    if not isinstance(slots, ReadSlots) or slots.config is not config:
        slots = ReadSlots(config)
        state.git_read_slots = slots
    return config, slots


class _Cut(Exception):
    """The stream cannot be finished (git failed while writing it)."""


async def stream_git(
    request: Request,
    command: Callable[[str], Sequence[str]],
    *,
    media_type: str,
    headers: dict[str, str],
    unavailable: str,
) -> StreamingResponse:
    """Stream the output of `command(git binary)` as the response, under a slot and the time limit.

    The first piece of output is awaited before answering, so a git that fails at once
    (the usual way it fails) gets a 500 instead of an empty 200. `unavailable` is the
    503 message when this node has no git.
    """
    config, slots = read_limits(request)
    if config.git_binary is None:
        raise ApiError(503, unavailable)
    await slots.acquire()
    proc: asyncio.subprocess.Process | None = None
    try:
        argv = command(config.git_binary)
        proc = await asyncio.create_subprocess_exec(
            argv[0],
            *argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_env(),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.time_limit_s
        response = _ProcessResponse(proc, deadline, slots, media_type=media_type, headers=headers)
        await response.start()
        return response
    except BaseException:
        if proc is not None:
            await _reap(proc)
        slots.release()
        raise


class _ProcessResponse(StreamingResponse):
    """A response streaming a process's stdout; whatever happens, the process is reaped and the slot freed."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        deadline: float,
        slots: ReadSlots,
        *,
        media_type: str,
        headers: dict[str, str],
    ) -> None:
        self.proc = proc
        self.deadline = deadline
        self.slots = slots
        self.first = b""
        self._stderr = b""
        self._stderr_task: asyncio.Task[None] | None = None
        super().__init__(self._chunks(), media_type=media_type, headers=headers)

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while piece := await self.proc.stderr.read(_CHUNK):
            self._stderr = (self._stderr + piece)[-_STDERR_KEPT:]

    async def start(self) -> None:
        """Wait (within the time limit) for the first output; 500 if git fails before any."""
        assert self.proc.stdout is not None
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        try:
            async with asyncio.timeout_at(self.deadline):
                self.first = await self.proc.stdout.read(_CHUNK)
                if not self.first and await self.proc.wait() != 0:
                    await self._stderr_task
                    err = self._stderr.decode(errors="replace")
                    log.error("git failed (%s): %s", self.proc.returncode, err)
                    raise ApiError(500, "git failed to read the repository")
        except TimeoutError:
            raise ApiError(503, "git did not answer in time; retry shortly", {"Retry-After": "5"}) from None

    async def _chunks(self) -> AsyncIterator[bytes]:
        assert self.proc.stdout is not None
        if self.first:
            yield self.first
        while chunk := await self.proc.stdout.read(_CHUNK):
            yield chunk
        if await self.proc.wait() != 0:
            if self._stderr_task is not None:
                await self._stderr_task
            raise _Cut(f"git exited with {self.proc.returncode}: {self._stderr.decode(errors='replace')}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with asyncio.timeout_at(self.deadline):
                await super().__call__(scope, receive, send)
        except TimeoutError:
            # Returning without the end of the body makes the server drop the connection.
            log.warning("a streamed git read reached its time limit and was cut off")
        except _Cut as exc:
            log.warning("a streamed git read failed: %s", str(exc)[:500])
        finally:
            with contextlib.suppress(Exception):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            await _reap(self.proc)
            if self._stderr_task is not None:
                self._stderr_task.cancel()
            self.slots.release()


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill the process if it still runs, and wait for it (no zombie is left behind).

    asyncio reports the exit only once the pipes are closed too, and it stops reading a
    pipe whose buffer is full: what is left in stdout (a pipe's worth) is read and dropped.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    if proc.stdout is not None:
        with contextlib.suppress(Exception):
            while await proc.stdout.read(_CHUNK):
                pass
    await proc.wait()
