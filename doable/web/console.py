"""The web console: its static files (`/`, `/console/...`), its config, and local sign-in.

The console is plain HTML, CSS and ES modules from `static/`, with no build step. It talks to
the same REST, live-stream and chat endpoints as any other client, with a bearer token it keeps
in memory or sessionStorage (never in a URL).

Local sign-in (`POST /api/local/token`) mints a short-lived token without a password, and only
for the configured local user (DOABLE_LOCAL_USER), so it is refused (404, as if it did not exist)
unless every one of these holds: embedded runtime; the embedded single-user default (the signing
secret generated under the data dir: no DOABLE_JWT_SECRET such as Better Auth's, whose users are
real accounts, and no JWKS) or DOABLE_CONSOLE_LOCAL_SIGNIN=true; not DOABLE_CONSOLE_LOCAL_SIGNIN=false;
a loopback client, a loopback Host (no DNS rebinding), no proxy forwarding headers, and a loopback
Origin if any.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from doable.platform.auth import mint
from doable.usecases.service import check_user_id
from doable.web.deps import WebDeps, WebDepsDep, deps_of
from doable.web.loopback import is_loopback

router = APIRouter(tags=["console"])

STATIC = Path(__file__).parent / "static"
LOCAL_TOKEN_TTL_SECONDS = 8 * 3600
CHATKIT_ORIGIN = "https://cdn.platform.openai.com"
_FILE = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(html|js|css|svg|png)$")
_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
}
_FORWARDING = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip")


class ConsoleConfig(BaseModel):
    local_signin: bool = Field(description="This client may use POST /api/local/token.")
    chatkit_domain_key: str | None = Field(description="Set: the console uses the ChatKit web component.")
    version: str


class LocalTokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: Annotated[
        str | None, Field(max_length=128, description="Must be DOABLE_LOCAL_USER if given (the only user it signs in).")
    ] = None


class LocalToken(BaseModel):
    token: str
    user_id: str
    expires_in: int


def local_signin_allowed(request: Request, deps: WebDeps | None = None) -> bool:
    """Whether this request may mint a local token (see the module docstring). `deps`: the app's
    (read from the request when not given, as the OAuth consent page's plain routes do)."""
    deps = deps or deps_of(request)
    settings = deps.settings
    if settings.console_local_signin is False or not deps.standalone or settings.jwt_jwks_url:
        return False
    if settings.console_local_signin is None and settings.jwt_secret is not None:
        # A configured shared secret means accounts live elsewhere (Better Auth): no password-less
        # tokens unless explicitly enabled.
        return False
    if deps.signing_secret is None:
        return False
    if request.client is None or not is_loopback(request.client.host):
        return False
    if any(name in request.headers for name in _FORWARDING):
        return False
    if not is_loopback(urlsplit("//" + request.headers.get("host", "")).hostname):
        return False
    origin = request.headers.get("origin")
    return origin is None or is_loopback(urlsplit(origin).hostname)


def _csp(chatkit: bool) -> str:
    """Same-origin only; ChatKit's CDN (and OpenAI's API, for its domain-key check) only when configured."""
    cdn = f" {CHATKIT_ORIGIN}" if chatkit else ""
    policy = {
        "default-src": "'self'",
        "script-src": "'self'" + cdn,
        "style-src": "'self'" + (" 'unsafe-inline'" + cdn if chatkit else ""),
        "connect-src": "'self'" + (" https://api.openai.com" + cdn if chatkit else ""),
        "frame-src": CHATKIT_ORIGIN if chatkit else "'none'",
        "font-src": "'self'" + cdn,
        "img-src": "'self' data:",
        "object-src": "'none'",
        "base-uri": "'none'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def _static(deps: WebDeps, name: str) -> Response:
    match = _FILE.match(name)
    path = STATIC / name
    if match is None or not path.is_file():
        raise HTTPException(status_code=404, detail=f"no console file {name!r}")
    headers = {
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
    if match.group(1) == "html":
        headers["Content-Security-Policy"] = _csp(bool(deps.settings.chatkit_domain_key))
    return FileResponse(path, media_type=_TYPES[match.group(1)], headers=headers)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def console_index(deps: WebDepsDep) -> Response:
    """The console's page."""
    return _static(deps, "index.html")


@router.get("/console", include_in_schema=False)
async def console_redirect() -> Response:
    return RedirectResponse("/", status_code=308)


@router.api_route("/console/{name}", methods=["GET", "HEAD"], include_in_schema=False)
async def console_file(deps: WebDepsDep, name: str) -> Response:
    """The console's scripts and styles (a flat folder; nothing else is served)."""
    return _static(deps, name)


@router.get("/api/console/config", response_model=ConsoleConfig)
async def console_config(request: Request, deps: WebDepsDep) -> ConsoleConfig:
    """What the console needs to know about this server (no secrets; no token needed)."""
    return ConsoleConfig(
        local_signin=local_signin_allowed(request, deps),
        chatkit_domain_key=deps.settings.chatkit_domain_key,
        version=request.app.version,
    )


@router.post(
    "/api/local/token",
    response_model=LocalToken,
    responses={404: {"description": "Local sign-in is not available here"}, 422: {"description": "Invalid user"}},
)
async def local_token(
    request: Request, deps: WebDepsDep, response: Response, body: LocalTokenIn | None = None
) -> LocalToken:
    """Embedded mode, from this machine only: a short-lived token for the local user (the console's sign-in)."""
    if not local_signin_allowed(request, deps):
        raise HTTPException(status_code=404, detail="Not Found")
    settings = deps.settings
    user = check_user_id(settings.local_user)
    if body is not None and body.user is not None and body.user != user:
        # One local user: the sign-in never mints a token for any other name.
        raise HTTPException(status_code=403, detail="local sign-in is only for the configured local user")
    assert deps.signing_secret is not None  # checked by local_signin_allowed
    token = mint(
        deps.signing_secret,
        user_id=user,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=LOCAL_TOKEN_TTL_SECONDS,
        extra={"azp": "doable-console"},
    )
    response.headers["Cache-Control"] = "no-store"
    return LocalToken(token=token, user_id=user, expires_in=LOCAL_TOKEN_TTL_SECONDS)
