"""The one place where errors become HTTP responses with the body API.md describes."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.services.errors import RunServiceError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


_BODY_NOT_PARSED = "There was an error parsing the body"


def error_response(
    status_code: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    /,
    **extra: Any,
) -> JSONResponse:
    # Positional-only: ``extra`` carries body fields such as ``status`` (the run's status),
    # which must not collide with these parameters.
    body = {"code": code, "message": message, **extra}
    return JSONResponse(jsonable_encoder(body), status_code=status_code, headers=headers)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Keep FastAPI's list, minus the echoed input (it may be huge or hold secrets) and ctx
    # objects that are not JSON.
    return [
        {k: v for k, v in error.items() if k in {"type", "loc", "msg"}} for error in exc.errors()
    ]


def _summary(errors: list[dict[str, Any]]) -> str:
    if not errors:
        return "the request is not valid"
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def add_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(RunServiceError)
    async def service_error(_: Request, exc: RunServiceError) -> JSONResponse:
        return error_response(
            exc.status_code, exc.code, exc.message, exc.headers or None, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        return error_response(422, "validation_error", _summary(errors), detail=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_NOT_PARSED:
            # FastAPI answers 400 when the body is not even text (invalid UTF-8); to a
            # client it is malformed JSON like any other, which API.md makes a 422.
            return error_response(
                422,
                "validation_error",
                "body: the request body is not valid UTF-8 JSON",
                detail=[{"type": "json_invalid", "loc": ["body"], "msg": "not valid UTF-8"}],
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(
            exc.status_code, code, message, dict(exc.headers) if exc.headers else None
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the server failed; see its log")
