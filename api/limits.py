"""Request body limits, enforced in one ASGI middleware before and while a route reads a body.

Size: JSON routes (everything under /api/) take at most `json_body_bytes`, the batch
submission route `batch_body_bytes`; a declared Content-Length over the limit is refused
at once, a chunked body as soon as it crosses the limit. Either way the answer is 413,
whatever the route does with the failure (FastAPI turns an error while it reads a body
into 400 "There was an error parsing the body", so the middleware replaces the route's
answer rather than trusting the error to come back out). Git smart HTTP routes have no
size limit here: they enforce their own pack limits while they spool.

Pace: on every route, git receive-pack included, a body that stalls (no byte for
`body_stall_s`) or, after `body_grace_s`, arrives on average slower than
`body_min_rate` bytes/s is cut off with 408 Request Timeout (if the response has not
started) and the connection is closed. A client trickling a body one byte per second
would otherwise hold a connection and a request task open forever. The time counted is
only the time the route spends waiting for the client: a route that is slow to read
(the server stops reading the socket meanwhile) never makes its client look slow.

The numbers live in `HttpLimits` (defaults below); the node reads the pace from the
environment (`STELE_HTTP_BODY_STALL_S`, `STELE_HTTP_BODY_GRACE_S`,
`STELE_HTTP_BODY_MIN_RATE`), which is how tests lower them for a real node process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import DOCS_URL

log = logging.getLogger(__name__)

JSON_BODY_LIMIT = 1024 * 1024
BATCH_BODY_LIMIT = 8 * 1024 * 1024
BATCH_PATH = "/api/v1/transactions/batch"
JSON_PREFIX = "/api/"

_ENV = {
    "body_stall_s": "STELE_HTTP_BODY_STALL_S",
    "body_grace_s": "STELE_HTTP_BODY_GRACE_S",
    "body_min_rate": "STELE_HTTP_BODY_MIN_RATE",
}


@dataclass(frozen=True)
class HttpLimits:
    """Every request-body limit of the HTTP API, in one place."""

    json_body_bytes: int = JSON_BODY_LIMIT
    batch_body_bytes: int = BATCH_BODY_LIMIT
    #: Seconds without a single body byte before the request is cut off.
    body_stall_s: float = 20.0
    #: Seconds of waiting for the body before the average rate is enforced.
    body_grace_s: float = 30.0
    #: Minimum average bytes per second of waiting, after the grace period (0: no minimum).
    body_min_rate: float = 1024.0

    def __post_init__(self) -> None:
        for name in ("json_body_bytes", "batch_body_bytes", "body_stall_s", "body_grace_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"HTTP limit {name} must be a positive number, not {value!r}")
        if not (math.isfinite(self.body_min_rate) and self.body_min_rate >= 0):
            raise ValueError(f"HTTP limit body_min_rate must be >= 0, not {self.body_min_rate!r}")

    def body_limit(self, path: str) -> int | None:
        """The size limit of a route's body; None for routes that enforce their own (git)."""
        if path == BATCH_PATH:
            return self.batch_body_bytes
        if path.startswith(JSON_PREFIX):
            return self.json_body_bytes
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HttpLimits:
        """The defaults, with the pace overridden by STELE_HTTP_BODY_* variables where set."""
        env = os.environ if environ is None else environ
        values: dict[str, float] = {}
        for name, var in _ENV.items():
            raw = env.get(var)
            if raw is None or not raw.strip():
                continue
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"{var} must be a number, not {raw!r}") from None
        defaults = cls()
        return cls(
            body_stall_s=values.get("body_stall_s", defaults.body_stall_s),
            body_grace_s=values.get("body_grace_s", defaults.body_grace_s),
            body_min_rate=values.get("body_min_rate", defaults.body_min_rate),
        )


class BodyGuard:
    """The middleware: size limits on JSON routes and a minimum pace on every route."""

    def __init__(
        self, app: ASGIApp, limits: HttpLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.app = app
        self.limits = limits if limits is not None else HttpLimits()
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.body_limit(scope["path"])
        if limit is not None:
            for name, value in scope.get("headers", ()):
                if name == b"content-length" and value.isdigit() and int(value) > limit:
                    await _answer(send, _too_large(limit))
                    return
        await _GuardedRequest(self.limits, limit, receive, send, self.clock).run(self.app, scope)


class _BodyAborted(Exception):
    """The body broke a limit; `status` is what the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large(limit: int) -> _BodyAborted:
    return _BodyAborted(413, f"request body exceeds the limit of {limit} bytes")


class _GuardedRequest:
    """One request: counts the body's bytes and the time spent waiting for them."""

    def __init__(
        self, limits: HttpLimits, limit: int | None, receive: Receive, send: Send, clock: Callable[[], float]
    ) -> None:
        self.limits = limits
        self.limit = limit
        self._receive = receive
        self._send = send
        self.clock = clock
        self.seen = 0  # body bytes received
        self.waited = 0.0  # seconds spent waiting for the client
        self.idle = 0.0  # seconds spent waiting since the last body byte
        self.complete = False  # the whole body (or a disconnect) has been received
        self.aborted: _BodyAborted | None = None
        self.started = False  # the route's response has started going out
        self.replaced = False  # the route's response was replaced by ours

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        try:
            await app(scope, self.receive, self.send)
        except Exception as exc:
            aborted = self.aborted
            if aborted is None or not _only(exc, _BodyAborted):
                raise
            if self.started:
                # Too late for a status: leave the response unfinished, so the server closes
                # the connection and the client cannot mistake it for a complete answer.
                log.info("request body cut off after the response started: %s", aborted.message)
                return
            if not self.replaced:
                await self._refuse(aborted)

    async def receive(self) -> Message:
        if self.aborted is not None:
            raise self.aborted  # a route that swallowed the first one reads no further
        try:
            message = await self._next()
        except _BodyAborted as slow:
            self.aborted = slow
            raise
        if self.limit is not None and self.seen > self.limit:
            self.aborted = _too_large(self.limit)
            raise self.aborted
        return message

    async def send(self, message: Message) -> None:
        if self.replaced:
            return  # the route's own answer to a body we cut off
        if message["type"] == "http.response.start":
            if self.aborted is not None:
                self.replaced = True
                await self._refuse(self.aborted)
                return
            self.started = True
        await self._send(message)

    def _time_left(self) -> float:
        """Seconds of waiting left before the body breaks the stall or the rate rule."""
        left = self.limits.body_stall_s - self.idle
        if self.limits.body_min_rate > 0:
            # After the grace period the average must stay >= min_rate: seen >= rate * waited.
            allowed = max(self.limits.body_grace_s, self.seen / self.limits.body_min_rate)
            left = min(left, allowed - self.waited)
        return left

    async def _next(self) -> Message:
        """The next message from the server, timed while the body is still coming."""
        if self.complete:
            return await self._receive()  # e.g. waiting for a disconnect: not the body's pace
        left = self._time_left()
        started = self.clock()
        try:
            if left <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self._receive(), left)
        except TimeoutError:
            spent = self.clock() - started
            self.waited += spent
            self.idle += spent
            raise self._slow() from None
        spent = self.clock() - started
        self.waited += spent
        if message["type"] == "http.request":
            body = message.get("body", b"")
            self.seen += len(body)
            self.idle = 0.0 if body else self.idle + spent
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message

    def _slow(self) -> _BodyAborted:
        if self.idle >= self.limits.body_stall_s:
            why = f"no request body data for {self.limits.body_stall_s:g} s"
        else:
            why = (
                f"request body arrived at {self.seen / max(self.waited, 1e-9):.0f} bytes/s, "
                f"below the minimum of {self.limits.body_min_rate:g} bytes/s"
            )
        return _BodyAborted(408, f"request timeout: {why}")

    async def _refuse(self, reason: _BodyAborted) -> None:
        """Answer with the reason; after a 413, first read on a little (within the pace rules)
        so a client still sending can finish and read the answer instead of a reset."""
        if reason.status == 413 and self.limit is not None:
            drained = 0
            while not self.complete and drained <= self.limit:
                try:
                    drained += len((await self._next()).get("body", b""))
                except _BodyAborted:
                    break
        await _answer(self._send, reason)


def _only(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether `exc` is `kind`, or a group (from a task group) holding nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


async def _answer(send: Send, reason: _BodyAborted) -> None:
    body = json.dumps(
        {"message": reason.message, "documentation_url": DOCS_URL}, separators=(",", ":")
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is not read: this connection is done
    ]
    await send({"type": "http.response.start", "status": reason.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
