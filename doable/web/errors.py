"""One translation of errors to HTTP: a clear JSON body naming the field and rule, never a traceback."""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from doable.domain.errors import DoableError
from doable.platform.auth import InvalidToken
from doable.platform.logs import current_trace_id

log = structlog.get_logger("doable.web")

STATUS = {
    "invalid_argument": 422,
    "not_found": 404,
    "conflict": 409,
    "unavailable": 503,
    "permission_denied": 403,
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": code, "message": message, **extra}


def validation_message(errors: list[Any]) -> tuple[str, list[dict[str, str]]]:
    fields: list[dict[str, str]] = []
    for err in errors[:10]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        fields.append({"field": ".".join(loc) or "body", "rule": str(err.get("msg", "is invalid"))})
    message = "; ".join(f"{f['field']}: {f['rule']}" for f in fields)
    return message, fields


# RFC 6750 3: error_description is printable ASCII without '"' and '\\' (then it needs no escaping).
_HEADER_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


def www_authenticate(description: str, error: str = "invalid_token") -> str:
    """The one builder of the WWW-Authenticate value: whatever `description` holds, the header
    stays Latin-1 encodable and its quoting intact (anything outside RFC 6750's set becomes '?')."""
    safe = _HEADER_UNSAFE.sub("?", description)[:200]
    return f'Bearer error="{_HEADER_UNSAFE.sub("?", error)}", error_description="{safe}"'


def unauthorized(message: str) -> JSONResponse:
    return JSONResponse(
        error_body("unauthorized", message),
        status_code=401,
        headers={"WWW-Authenticate": www_authenticate(message)},
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(DoableError)
    async def _domain(_: Request, exc: DoableError) -> JSONResponse:
        body = error_body(exc.code, exc.message)
        if field := getattr(exc, "field", None):
            body["field"] = field
        return JSONResponse(body, status_code=STATUS.get(exc.code, 400))

    @app.exception_handler(InvalidToken)
    async def _token(_: Request, exc: InvalidToken) -> JSONResponse:
        return unauthorized(str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, fields = validation_message(list(exc.errors()))
        return JSONResponse(error_body("invalid_argument", message, fields=fields), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body that is not even text (invalid UTF-8); a body that is
            # text but not JSON already gets 422, so this one does too.
            return JSONResponse(error_body("invalid_argument", "body: must be JSON text (UTF-8)"), status_code=422)
        code = {401: "unauthorized", 403: "permission_denied", 404: "not_found", 405: "method_not_allowed"}.get(
            exc.status_code, "error"
        )
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("http.unhandled", error_type=type(exc).__name__, exc_info=exc)
        return JSONResponse(
            error_body("internal", f"unexpected error; logged with trace id {current_trace_id()}"), status_code=500
        )
