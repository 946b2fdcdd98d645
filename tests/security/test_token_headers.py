"""Whatever a bearer token holds, every surface answers 401 with a well-formed WWW-Authenticate.

Hypothesis builds tokens whose header (and payload) hold arbitrary JSON: any unicode, quotes,
backslashes, control characters, wrong types for `alg`/`kid`, algorithms that do not fit the key
(an ES256 token naming an RSA key of a JWKS), sometimes with a valid HMAC signature. Each goes to
REST (read and write), both live streams (header and `?access_token=`), /chatkit, the spec's chat
endpoint and MCP, with a shared secret and with a JWKS. The answer must be a 401 whose
WWW-Authenticate is a Latin-1 header of RFC 6750 syntax that echoes nothing from the token.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from doable.bootstrap import Runtime, build
from doable.platform.auth import JwksCache, TokenVerifier
from doable.platform.settings import Settings
from doable.web.app import create_app
from doable.web.errors import www_authenticate
from tests.chat.conftest import text_input
from tests.conftest import JWT_SECRET, lifespan_running
from tests.reliability.fuzz import fuzz, json_values
from tests.security.test_tokens import claims

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
# RFC 6750 3: Bearer followed by auth-params whose values are quoted strings without '"' or '\'.
_PARAM = r'[a-z_]+="[\x20\x21\x23-\x5b\x5d-\x7e]*"'
WWW_AUTHENTICATE = re.compile(rf"^Bearer {_PARAM}(, {_PARAM})*$")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: Any, payload: Any, *, ascii_only: bool, sign: bool) -> str:
    """A token with exactly this header and payload (any JSON), HMAC-signed with the server's
    secret when `sign` (so only the header can make it fail), else with junk."""
    head = b64(json.dumps(header, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
    body = b64(json.dumps(payload, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass"))
    signing_input = f"{head}.{body}".encode()
    signature = hmac.new(JWT_SECRET.encode(), signing_input, hashlib.sha256).digest() if sign else b"junk"
    return f"{head}.{body}.{b64(signature)}"


AWKWARD = st.one_of(
    st.sampled_from(['€', '"', '\\', '", x="y', "\r\nX-Injected: 1", "\x00", "ÿ", "𝕏", "HS256\"", "none", "ES256", "RS256", "HS256"]),
    st.text(max_size=20),
    json_values(),
)
HEADERS = st.fixed_dictionaries(
    {"alg": AWKWARD},
    optional={"kid": st.one_of(st.sampled_from(["k1", "ec1", "nope"]), AWKWARD), "typ": AWKWARD, "crit": AWKWARD},
).flatmap(lambda h: st.dictionaries(st.text(max_size=6), AWKWARD, max_size=2).map(lambda extra: {**extra, **h}))
PAYLOADS = st.one_of(st.just(claims()), st.builds(lambda extra: {**claims(), **extra}, st.dictionaries(st.sampled_from(["sub", "aud", "iss", "exp", "nbf", "scope"]), AWKWARD, max_size=2)), json_values())
TOKENS = st.builds(forge, HEADERS, PAYLOADS, ascii_only=st.booleans(), sign=st.booleans())

SURFACES = [
    ("GET", "/api/tasks", None),
    ("POST", "/api/tasks", b'{"title":"x"}'),
    ("GET", "/api/notifications/stream", None),
    ("GET", "/api/updates/stream", None),
    ("POST", "/chatkit", json.dumps({"type": "threads.create", "params": {"input": text_input("hi")}, "metadata": {}}).encode()),
    ("POST", "/api/alice/chat", b'{"message":"hi"}'),
    ("POST", "/mcp", b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'),
]


async def first_answer(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes | None) -> tuple[int, dict[bytes, bytes]]:
    """The status and headers an ASGI app starts its answer with (a live stream is left at once)."""
    path_only, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json, text/event-stream"),
            (b"mcp-protocol-version", b"2025-11-25"),
            *headers,
        ],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
    }
    started: asyncio.Future[tuple[int, dict[bytes, bytes]]] = asyncio.get_running_loop().create_future()
    gone = asyncio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not started.done():
            started.set_result((message["status"], dict(message.get("headers", []))))

    task = asyncio.create_task(app(scope, receive, send))
    try:
        return await asyncio.wait_for(asyncio.shield(started), 30)
    finally:
        gone.set()
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, Exception):  # the app's own end after the disconnect
            pass


async def check_everywhere(app: Any, token: str) -> None:
    raw = token.encode("utf-8", "surrogatepass")
    for method, path, body in SURFACES:
        variants = [[(b"authorization", b"Bearer " + raw)]]
        if path.endswith("/stream"):
            variants.append([])
        for i, headers in enumerate(variants):
            target = path if i == 0 else f"{path}?access_token={quote(raw, safe='')}"
            status, answer = await first_answer(app, method, target, headers, body)
            assert status == 401, (method, target, token, status)
            value = answer.get(b"www-authenticate", b"").decode("latin-1")
            assert WWW_AUTHENTICATE.match(value), (method, target, value)


@pytest.fixture
async def shared_app(settings: Settings) -> AsyncIterator[Any]:
    # No back-off here: this test sends thousands of bad tokens from one address on purpose.
    runtime = await build(settings.model_copy(update={"auth_failures_per_minute": 0}))
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            yield app
    finally:
        await runtime.aclose()


def _jwks_document() -> dict[str, Any]:
    rsa_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    ec_jwk = jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True)
    return {"keys": [{**rsa_jwk, "kid": "k1", "alg": "RS256", "use": "sig"}, {**ec_jwk, "kid": "ec1", "use": "sig"}]}


@pytest.fixture
async def jwks_app(settings: Settings) -> AsyncIterator[Any]:
    document = _jwks_document()
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(lambda _: httpx2.Response(200, json=document)))
    update = {"jwt_secret": None, "jwt_jwks_url": "https://idp.invalid/jwks", "auth_failures_per_minute": 0}
    runtime: Runtime = await build(settings.model_copy(update=update))
    runtime.verifier = TokenVerifier(
        secret=None, issuer="doable", audience="doable", jwks=JwksCache("https://idp.invalid/jwks", client=client)
    )
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            yield app
    finally:
        await client.aclose()
        await runtime.aclose()


def _mismatched(alg: str, kid: str) -> str:
    """A token signed for `alg` whose header names key `kid` of another type."""
    key: Any = EC_KEY if alg.startswith("ES") else RSA_KEY
    if alg.startswith("ES") and alg != "ES256":
        key = ec.generate_private_key(ec.SECP384R1() if alg == "ES384" else ec.SECP521R1())
    return jwt.encode(claims(), key, algorithm=alg, headers={"kid": kid})


# The examples of the issue, and each key-type mismatch a JWKS allows.
KNOWN = {
    "alg outside latin-1": forge({"alg": "€"}, claims(), ascii_only=False, sign=True),
    "alg escaped outside latin-1": forge({"alg": "€"}, claims(), ascii_only=True, sign=True),
    "quote in alg": forge({"alg": 'HS256", error="x'}, claims(), ascii_only=True, sign=True),
    "backslash in alg": forge({"alg": "\\"}, claims(), ascii_only=True, sign=True),
    "kid is a list": forge({"alg": "HS256", "kid": ["a"]}, claims(), ascii_only=True, sign=True),
    "kid is an object": forge({"alg": "RS256", "kid": {"a": 1}}, claims(), ascii_only=True, sign=False),
    "header is a list": b64(b'["alg"]') + "." + b64(json.dumps(claims()).encode()) + ".sig",
}
MISMATCHED = {
    "ES256 naming the RSA key": _mismatched("ES256", "k1"),
    "ES384 naming the RSA key": _mismatched("ES384", "k1"),
    "PS256 naming the EC key": _mismatched("PS256", "ec1"),
    "RS256 naming the EC key": _mismatched("RS256", "ec1"),
    "EdDSA naming the RSA key": forge({"alg": "EdDSA", "kid": "k1"}, claims(), ascii_only=True, sign=False),
}


@pytest.mark.parametrize("name", sorted(KNOWN))
async def test_known_hostile_headers_get_401_everywhere_with_a_shared_secret(shared_app: Any, name: str) -> None:
    await check_everywhere(shared_app, KNOWN[name])


@pytest.mark.parametrize("name", sorted({**KNOWN, **MISMATCHED}))
async def test_known_hostile_headers_and_key_type_mismatches_get_401_everywhere_with_a_jwks(
    jwks_app: Any, name: str
) -> None:
    await check_everywhere(jwks_app, {**KNOWN, **MISMATCHED}[name])


@fuzz(60)
@given(token=TOKENS)
async def test_any_token_header_gets_401_everywhere_with_a_shared_secret(shared_app: Any, token: str) -> None:
    await check_everywhere(shared_app, token)


@fuzz(40)
@given(token=TOKENS)
async def test_any_token_header_gets_401_everywhere_with_a_jwks(jwks_app: Any, token: str) -> None:
    await check_everywhere(jwks_app, token)


@given(description=st.text())
def test_the_www_authenticate_builder_keeps_any_text_in_its_syntax(description: str) -> None:
    value = www_authenticate(description)
    value.encode("latin-1")
    assert WWW_AUTHENTICATE.match(value), value
