"""Plumbing shared by the GitHub-compatible routes: the request context, commands, errors.

- `Reader` / `Writer` are the dependencies of every route. Both first wait until this
  node has applied the position the client asks for (`X-Stele-Min-Position: P` or
  `?min_position=P`), then authenticate the caller against the finalized state
  (401 "Bad credentials" for an unknown or revoked token); `Writer` also requires a
  caller (401 "Requires authentication").
- Token scopes (`commands.scopes`): `V3.check(need)` records what a route accepts (sent
  as `X-Accepted-OAuth-Scopes`) and refuses a token without it as GitHub does (mostly
  404); `V3.has(need)` asks without refusing. They bind from protocol version 2, as in
  the ledger. `command` checks a command's scopes with the very rule the ledger applies.
- `command` runs a ledger command through the gateway and turns rejections into
  GitHub's errors: 409 (a name already taken) becomes 422 with code `already_exists`,
  422 becomes GitHub's validation body, every other code passes through unchanged.
- `V3Route` is the route class of the v3 routers: GitHub's validation body for
  malformed requests (400 "Problems parsing JSON" for a body that is not JSON), JSON
  bodies whatever their declared content type (as GitHub reads them), and the
  position a read reflects in `X-Stele-Position` (errors too, so a client that got
  a 404 knows which state it was judged against).
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from fastapi import Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict

from api.auth import Caller, accepts, authenticate, require
from api.errors import DOCS_URL, ApiError, error_response
from api.gateway import CommandGateway
from api.reads import Reads
from api.services import Services, services
from api.v3.shapes import Json, Urls
from commands import scopes
from commands.decision import Rejection
from commands.handlers import parse_payload
from commands.ledger import Receipt
from domain.rules import Rules
from domain.state import LedgerState

POSITION_HEADER = "X-Stele-Position"
_POSITION_STATE = "stele_position"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_PAYLOAD_FIELD = re.compile(r"payload\.([A-Za-z_]+)")


class GitHubBody(BaseModel):
    """A request body: unknown fields are ignored (as GitHub does), types are not coerced."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    #: GitHub's `resource` in validation errors about this body.
    resource: ClassVar[str] = "Request"


class ValidationFailed(ApiError):
    """A 422 with GitHub's validation body: {"message": "Validation Failed", "errors": [...]}."""

    def __init__(self, errors: list[Json], headers: dict[str, str] | None = None) -> None:
        super().__init__(422, "Validation Failed", headers)
        self.errors = errors

    @classmethod
    def one(
        cls,
        resource: str,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ValidationFailed:
        error: Json = {"resource": resource, "code": code, "message": message}
        if field is not None:
            error["field"] = field
        return cls([error], headers)

    def response(self) -> JSONResponse:
        body = {"message": self.message, "errors": self.errors, "documentation_url": DOCS_URL}
        return JSONResponse(body, status_code=422, headers=self.headers)


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


# -- the request context -------------------------------------------------------------------


@dataclass(frozen=True)
class V3:
    """One request's view of the node: its caller, and the facts of one applied height."""

    request: Request
    node: Services
    caller: Caller | None
    urls: Urls
    #: Whether token scopes bind (the rules of the next block: protocol version 2 on).
    scoped: bool

    @property
    def reads(self) -> Reads:
        """Where every fact comes from (see `api.reads`)."""
        return self.node.reads

    @property
    def state(self) -> LedgerState:
        return self.node.reads.state

    @property
    def gateway(self) -> CommandGateway:
        return self.node.gateway

    def visible_repo(self, owner: str, name: str) -> tuple[Json, str]:
        """The repository's row and the caller's effective permission; 404 when it is missing
        or hidden (from the caller, or from a token without `repo` if it is private)."""
        self.check(scopes.repo_read(private=False))  # advertise `repo` before knowing anything
        row = self.reads.repo(owner, name)
        if row is None:
            raise not_found()
        level = self.reads.permission(self.viewer_id, row["repo_id"])
        if level is None:
            raise not_found()
        self.check(scopes.repo_read(private=bool(row["private"])))
        return row, level

    def rules(self) -> Rules:
        """The rules a command submitted now runs under (those of the next block)."""
        ledger = self.node.ledger
        return ledger.rules.at(ledger.height + 1)

    def has(self, need: scopes.Need) -> bool:
        """Whether the caller's token holds a scope `need` accepts (always, where scopes do not
        bind or there is no token)."""
        if not self.scoped or self.caller is None:
            return True
        return need.allows(self.caller.token.scopes)

    def check(self, need: scopes.Need) -> None:
        """Advertise what this route accepts; refuse a token that lacks it as GitHub does."""
        accepts(self.request, need)
        if not self.scoped or self.caller is None:
            return
        refused = need.refusal(self.caller.token.scopes)
        if refused is not None:
            raise ApiError(refused.code, refused.message)

    @property
    def viewer_id(self) -> str | None:
        return None if self.caller is None else self.caller.user.user_id

    def require(self) -> Caller:
        return require(self.caller)


async def _context(
    request: Request,
    min_position: Annotated[
        int | None, Query(ge=0, description="Answer only once this node has applied this log position")
    ] = None,
    x_stele_min_position: Annotated[int | None, Header(ge=0)] = None,
) -> V3:
    node = services(request)
    ledger = node.ledger
    wanted = max((p for p in (min_position, x_stele_min_position) if p is not None), default=None)
    await node.gateway.wait_position(wanted)
    # No await from here on: everything the route reads is from this one height.
    setattr(request.state, _POSITION_STATE, ledger.height)
    caller = authenticate(ledger.state, request.headers.get("authorization"))
    scoped = ledger.rules.at(ledger.height + 1).token_scopes
    return V3(request, node, caller, Urls(str(request.base_url)), scoped)


async def _writer(ctx: Annotated[V3, Depends(_context)]) -> V3:
    ctx.require()
    return ctx


Reader = Annotated[V3, Depends(_context)]
Writer = Annotated[V3, Depends(_writer)]


# -- commands ------------------------------------------------------------------------------


async def command(
    ctx: V3, kind: str, payload: dict[str, Any], *, resource: str, field: str | None = None
) -> Receipt:
    """Run a ledger command for the caller; its successful receipt, or the rejection as GitHub's error.

    The token's scopes are checked first with the ledger's own rule (`commands.scopes`), on
    the state this request reads; the ledger checks them again at apply time.
    """
    caller = ctx.require()
    parsed = parse_payload(kind, payload, ctx.rules())
    if not isinstance(parsed, Rejection):  # an invalid payload is the ledger's 422
        ctx.check(scopes.command_need(ctx.state, kind, parsed, caller.user))
    try:
        return await ctx.gateway.run(caller, kind, payload)
    except ApiError as exc:
        if exc.status == 409:
            raise ValidationFailed.one(resource, "already_exists", exc.message, field, exc.headers) from None
        if exc.status == 422:
            named = _PAYLOAD_FIELD.search(exc.message)
            if named is not None:
                raise ValidationFailed.one(
                    resource, "invalid", exc.message, named.group(1), exc.headers
                ) from None
            raise ValidationFailed.one(resource, "custom", exc.message, field, exc.headers) from None
        raise


def _position(receipt: Receipt) -> dict[str, str]:
    return {POSITION_HEADER: str(receipt.height)}


def created(body: Json, receipt: Receipt) -> JSONResponse:
    return JSONResponse(body, status_code=201, headers=_position(receipt))


def ok(body: Json, receipt: Receipt) -> JSONResponse:
    return JSONResponse(body, status_code=200, headers=_position(receipt))


def no_content(receipt: Receipt) -> Response:
    return Response(status_code=204, headers=_position(receipt))


# -- the route class -----------------------------------------------------------------------


def _resource_of(annotation: Any) -> str:
    """The `resource` of the body model in a (possibly optional) body annotation."""
    candidates = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, GitHubBody):
            return candidate.resource
    return "Request"


def _validation_response(exc: RequestValidationError, resource: str) -> JSONResponse:
    errors: list[Json] = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        kind = str(error.get("type", ""))
        if kind == "json_invalid":
            return error_response(400, "Problems parsing JSON")
        where = str(loc[0]) if loc else ""
        field = ".".join(str(p) for p in loc[1:])
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        if where == "body" and not field:
            if kind != "missing":
                return error_response(400, "Body should be a JSON object")
            message = "a JSON body is required"
        errors.append(
            {
                "resource": resource if where == "body" else "Request",
                "code": "missing_field" if kind == "missing" else "invalid",
                "field": field or where,
                "message": message,
            }
        )
    return ValidationFailed(errors).response()


def _as_json(request: Request) -> Request:
    """The request with its body declared JSON: GitHub parses bodies as JSON whatever the content type."""
    if request.method not in _BODY_METHODS:
        return request
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared == "application/json" or declared.endswith("+json"):
        return request
    headers = [(k, v) for k, v in request.scope["headers"] if k.lower() != b"content-type"]
    headers.append((b"content-type", b"application/json"))
    return Request({**request.scope, "headers": headers}, request.receive)


class V3Route(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        body_field = self.body_field
        resource = _resource_of(body_field.field_info.annotation) if body_field is not None else "Request"

        async def handle(request: Request) -> Response:
            request = _as_json(request)
            try:
                response = await handler(request)
            except ValidationFailed as exc:
                response = exc.response()
            except RequestValidationError as exc:
                response = _validation_response(exc, resource)
            except ApiError as exc:
                response = error_response(exc.status, exc.message, exc.headers)
            position = getattr(request.state, _POSITION_STATE, None)
            if position is not None and POSITION_HEADER.lower() not in response.headers:
                response.headers[POSITION_HEADER] = str(position)
            response.headers["X-GitHub-Media-Type"] = "github.v3; format=json"
            return response

        return handle
