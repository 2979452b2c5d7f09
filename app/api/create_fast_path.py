"""POST /api/v1/runs without FastAPI's routing, dependency solving and response validation.

A create is the one write a client waits for, and with 32 clients posting it is the
throughput of the whole server (wrk keeps 32 requests in flight: p99 falls only as
creates/s rise). The route's framework work (matching the routes, solving the body and
header parameters, validating the answer against RunAccepted, encoding it) measured about
a third of the event loop's time per POST; this pure ASGI middleware does the same work
for the usual request only: a JSON body that validates against ``RunCreate`` (the route's
own model), with no Idempotency-Key. It starts the run through the same ``submit_run`` and
answers the same bytes as the route, errors as the app's handlers do (``error_response``).

Anything else goes on to the route, which stays the one definition of the endpoint (its
OpenAPI entry, its 422 messages, keyed requests): an invalid body, another content type, an
Idempotency-Key. The body this middleware has read is handed on unchanged. Installed only
when no API keys are configured, as StatusFastPath: a keyed server checks every request's
key in the route.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import error_response
from app.api.models import RunCreate
from app.api.services.errors import RunServiceError
from app.api.services.run_store import RunOptions
from app.api.services.run_submission import submit_run

PATH = "/api/v1/runs"
_JSON = b"application/json"
_HEADERS = [(b"content-type", b"application/json")]


class CreateFastPath:
    def __init__(self, app: ASGIApp, *, route: BaseRoute) -> None:
        self.app = app
        # Set on the scope as the router would, so that RequestMetrics labels the request
        # with the route's template.
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or scope.get("root_path")
            or not _plain_json(scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        state = scope.get("state")
        if not state or "executor" not in state:  # no lifespan (yet): the route says why
            await self.app(scope, receive, send)
            return
        body, last = await _read_body(receive)
        try:
            if last is not None:  # the client went away mid-body
                raise ValueError
            request = RunCreate.model_validate(json.loads(body))
        except (ValueError, RecursionError, ValidationError):
            # Not the usual request: the route answers it (its 422 names the problem). A
            # body nested too deeply for json.loads raises RecursionError, which the route
            # turns into a 422 too; escaping from here it was a logged 500.
            await self.app(scope, _replay(body, last, receive), send)
            return
        scope["route"] = self.route
        settings = state["settings"]
        options = RunOptions(
            question=request.question,
            enable_sql=request.enable_sql,
            markdown_path=request.markdown_path or settings.markdown_path,
            log_llm_payload=request.log_llm_payload,
        )
        try:
            run = await submit_run(
                settings,
                state["executor"],
                state["store"],
                options,
                run_id=request.run_id,
                idempotency_key=None,
            )
        except RunServiceError as exc:
            response = error_response(
                exc.status_code, exc.code, exc.message, exc.headers or None, **exc.extra
            )
            await response(scope, receive, send)
            return
        await _accepted(send, run.run_id)


def _plain_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """Content-Type application/json (parameters such as charset aside) and no
    Idempotency-Key: the requests this path answers. Of several Content-Type headers the
    first counts, as for the route (Starlette's ``headers.get``): the two must not read one
    request as two different ones."""
    content_type: bytes | None = None
    for name, value in headers:
        if name == b"content-type":
            if content_type is None:
                content_type = value
        elif name == b"idempotency-key":
            return False
    return content_type is not None and content_type.split(b";", 1)[0].strip().lower() == _JSON


async def _read_body(receive: Receive) -> tuple[bytes, Message | None]:
    """The whole body; and the message that cut it short (a disconnect), if one did."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _replay(body: bytes, last: Message | None, receive: Receive) -> Receive:
    """A receive that gives the route the body already read, then what comes next."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    if last is not None:
        pending = [{"type": "http.request", "body": body, "more_body": True}, last]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _accepted(send: Send, run_id: str) -> None:
    """The route's 202, byte for byte: RunAccepted's fields in order, and Location. Run ids
    are letters, digits, '.', '_' and '-' (RunId; generated ids too): nothing to escape."""
    base = f"{PATH}/{run_id}"
    payload: dict[str, Any] = {
        "run_id": run_id,
        "status": "queued",
        "status_url": f"{base}/status",
        "output_url": f"{base}/output",
        "context_url": f"{base}/context",
    }
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 202,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                *_HEADERS,
                (b"location", payload["status_url"].encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
