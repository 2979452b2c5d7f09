"""The one place where errors become HTTP responses with the body docs/api.md describes."""

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


# The fields of POST /api/v1/runs, named when a client sends another.
_RUN_FIELDS = "question, run_id, enable_sql, markdown_path, log_llm_payload"
_RULES = {
    "run_id": "must start with a letter or a digit and have at most 128 letters, digits, "
    "'.', '_' or '-'",
    "status": "must be one of queued, running, completed, completed_with_gaps, failed, stopped",
    "Idempotency-Key": "must be 1 to 255 printable ASCII characters",
}


def _summary(errors: list[dict[str, Any]], content_type: str = "") -> str:
    """The errors in words a person reads at once (the field list stays in ``detail``)."""
    if not errors:
        return "the request is not valid"
    parts = list(dict.fromkeys(_sentence(error, content_type) for error in errors[:3]))
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _sentence(error: dict[str, Any], content_type: str) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    kind, msg = str(error.get("type", "")), str(error.get("msg", ""))
    source, name = (loc[0], ".".join(loc[1:])) if loc else ("body", "")
    if source == "body" and (not name or name.isdigit()):
        if kind == "json_invalid":
            return "the body is not valid JSON"
        if kind == "missing":
            return 'the body is empty: send JSON such as {"question": "..."}'
        if "json" not in content_type.lower():
            return "send JSON with the header content-type: application/json"
        return 'the body must be a JSON object such as {"question": "..."}'
    if source == "query":
        where = f"the query parameter {name}"
    elif source == "header":
        where = f"the {name} header"
    elif source == "path":
        where = f"the {name} in the path"
    else:
        where = name
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"'{name}' is not a field of this request (the fields: {_RUN_FIELDS})"
    if name in _RULES and kind in {"string_pattern_mismatch", "string_too_long", "enum"}:
        return f"{where} {_RULES[name]}"
    if kind == "string_too_short" and error.get("ctx", {}).get("min_length") == 1:
        return f"{where} must not be empty"
    if kind == "string_too_long":
        return f"{where} is longer than {error.get('ctx', {}).get('max_length')} characters"
    if kind in {"int_parsing", "int_type"}:
        return f"{where} must be a whole number"
    if kind in {"bool_parsing", "bool_type"}:
        return f"{where} must be true or false"
    if kind == "string_type":
        return f"{where} must be a string"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = next(iter(error.get("ctx", {}).values()), "")
        words = {
            "greater_than_equal": "at least",
            "less_than_equal": "at most",
            "greater_than": "more than",
            "less_than": "less than",
        }
        return f"{where} must be {words[kind]} {bound}"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{where}: {msg}"


def add_exception_handlers(app: FastAPI) -> None:
    @app.exception_handler(RunServiceError)
    async def service_error(_: Request, exc: RunServiceError) -> JSONResponse:
        return error_response(
            exc.status_code, exc.code, exc.message, exc.headers or None, **exc.extra
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        message = _summary(list(exc.errors()), request.headers.get("content-type", ""))
        return error_response(422, "validation_error", message, detail=errors)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _BODY_NOT_PARSED:
            # FastAPI answers 400 when the body cannot be parsed at all (not UTF-8 text, or
            # nested too deeply for the JSON parser); to a client it is malformed JSON like
            # any other, which docs/api.md makes a 422. FastAPI chains the parser's error.
            if isinstance(exc.__cause__, RecursionError):
                why, short = "it is nested too deeply", "nested too deeply"
            else:
                why, short = "it is not even UTF-8 text", "not valid UTF-8"
            return error_response(
                422,
                "validation_error",
                f"the body is not valid JSON ({why})",
                detail=[{"type": "json_invalid", "loc": ["body"], "msg": short}],
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
