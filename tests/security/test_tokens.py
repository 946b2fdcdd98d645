"""Bad tokens get 401 on every authenticated surface: REST, MCP over HTTP, ChatKit (and the spec's
chat endpoint) and both SSE streams (header and `?access_token=`), with a shared secret and with
a JWKS, including HS/RS confusion and a key rotation.

(tests/e2e/test_auth.py holds the original REST + MCP matrix; this extends it to every surface.)
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from doable.bootstrap import Runtime, build
from doable.platform.auth import JwksCache, TokenVerifier, service_tokens
from doable.platform.settings import Settings
from doable.web.app import create_app
from tests.chat.conftest import text_input
from tests.conftest import JWT_SECRET, lifespan_running
from tests.workers.conftest import open_stream


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"sub": "alice", "iss": "doable", "aud": "doable", "iat": now, "exp": now + 300}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)


def _hs256_with_public_key() -> str:
    """The classic HS/RS confusion: an HMAC token whose 'secret' is the server's public key."""
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    import hashlib
    import hmac

    signature = hmac.new(PUBLIC_PEM, header + b"." + body, hashlib.sha256).digest()
    return (header + b"." + body + b"." + jwt.utils.base64url_encode(signature)).decode()


SHARED_SECRET_BAD = {
    "missing": None,
    "empty": "",
    "malformed": "not-a-jwt",
    "garbage segments": "a.b.c",
    "oversized": "e" * 9000,
    "expired": jwt.encode(claims(exp=int(time.time()) - 3600), JWT_SECRET, algorithm="HS256"),
    "not yet valid": jwt.encode(claims(nbf=int(time.time()) + 3600), JWT_SECRET, algorithm="HS256"),
    "wrong issuer": jwt.encode(claims(iss="evil"), JWT_SECRET, algorithm="HS256"),
    "wrong audience": jwt.encode(claims(aud="someone-else"), JWT_SECRET, algorithm="HS256"),
    "wrong signature": jwt.encode(claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
    "alg none": jwt.encode(claims(), None, algorithm="none"),
    "alg none, upper case": jwt.encode(claims(), None, algorithm="none").replace(
        jwt.utils.base64url_encode(b'{"alg":"none","typ":"JWT"}').decode(),
        jwt.utils.base64url_encode(b'{"alg":"NONE","typ":"JWT"}').decode(),
    ),
    "no subject": jwt.encode(claims(sub=None), JWT_SECRET, algorithm="HS256"),
    "empty subject": jwt.encode(claims(sub=""), JWT_SECRET, algorithm="HS256"),
    "subject not a string": jwt.encode({**claims(), "sub": 42}, JWT_SECRET, algorithm="HS256"),
    "no expiry": jwt.encode(claims(exp=None), JWT_SECRET, algorithm="HS256"),
    "rs256 from an unknown key": jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "hs512 not allowed": jwt.encode(claims(), JWT_SECRET, algorithm="HS512"),
    "hs256 keyed with a public key": _hs256_with_public_key(),
}


@pytest.fixture
async def served(runtime: Runtime) -> AsyncIterator[tuple[Any, httpx2.AsyncClient]]:
    app = create_app(runtime)
    async with lifespan_running(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
            yield app, http


async def surfaces(app: Any, http: httpx2.AsyncClient, token: str | None) -> dict[str, int]:
    """The status each authenticated surface gives `token` (None: no credentials at all)."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    json_headers = {**headers, "content-type": "application/json"}
    statuses: dict[str, int] = {}
    statuses["rest"] = (await http.get("/api/tasks", headers=headers)).status_code
    statuses["rest write"] = (await http.post("/api/tasks", json={"title": "x"}, headers=headers)).status_code
    statuses["mcp"] = (
        await http.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={**headers, "accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"},
        )
    ).status_code
    chat_body = json.dumps({"type": "threads.create", "params": {"input": text_input("hi")}, "metadata": {}})
    statuses["chatkit"] = (await http.post("/chatkit", content=chat_body, headers=json_headers)).status_code
    statuses["chat spec"] = (await http.post("/api/alice/chat", json={"message": "hi"}, headers=headers)).status_code
    for path in ("/api/notifications/stream", "/api/updates/stream"):
        async with open_stream(app, path, headers) as stream:
            statuses[f"sse {path} header"] = stream.status or 0
        if token:
            query = httpx2.QueryParams({"access_token": token})
            async with open_stream(app, f"{path}?{query}") as stream:
                statuses[f"sse {path} query"] = stream.status or 0
    return statuses


@pytest.mark.parametrize("case", sorted(SHARED_SECRET_BAD))
async def test_bad_tokens_get_401_on_every_surface(
    served: tuple[Any, httpx2.AsyncClient], runtime: Runtime, case: str
) -> None:
    app, http = served
    statuses = await surfaces(app, http, SHARED_SECRET_BAD[case])
    assert set(statuses.values()) == {401}, statuses
    assert await runtime.outbox.history("alice") == []  # nothing was written by anyone


async def test_a_good_token_opens_every_surface(
    served: tuple[Any, httpx2.AsyncClient], token_for: Callable[..., str]
) -> None:
    app, http = served
    statuses = await surfaces(app, http, token_for("alice"))
    # Chat has no model in tests: its documented 503 (chat_unavailable) means the token passed.
    assert statuses == {
        "rest": 200,
        "rest write": 201,
        "mcp": 200,
        "chatkit": 200,
        "chat spec": 503,
        "sse /api/notifications/stream header": 200,
        "sse /api/notifications/stream query": 200,
        "sse /api/updates/stream header": 200,
        "sse /api/updates/stream query": 200,
    }


async def test_the_agents_mcp_token_opens_only_mcp(served: tuple[Any, httpx2.AsyncClient], runtime: Runtime) -> None:
    """The short-lived token the chat agent mints (audience doable-mcp) is refused everywhere but /mcp."""
    app, http = served
    token = service_tokens(runtime.settings, runtime.signing_secret).mint("alice")
    statuses = await surfaces(app, http, token)
    assert statuses.pop("mcp") == 200
    assert set(statuses.values()) == {401}, statuses


async def test_a_scheme_other_than_bearer_is_refused(served: tuple[Any, httpx2.AsyncClient], token_for: Callable[..., str]) -> None:
    _, http = served
    for header in (f"Basic {token_for('alice')}", token_for("alice"), f"Bearer  {token_for('alice')}x", "Bearer"):
        response = await http.get("/api/tasks", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.json()["error"] == "unauthorized"


# ---- a JWKS (RS256): HS/RS confusion and key rotation -------------------------------------------


class Jwks:
    """A JWKS endpoint we control, reached through the verifier's HTTP client (no socket)."""

    def __init__(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.serve(*keys)
        self.fetches = 0

    def serve(self, *keys: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.document = {
            "keys": [
                {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256", "use": "sig"}
                for kid, key in keys
            ]
        }

    down = False

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.fetches += 1
        if self.down:
            return httpx2.Response(503, text="identity provider down")
        return httpx2.Response(200, json=self.document)


@pytest.fixture
async def jwks_app(settings: Settings) -> AsyncIterator[tuple[Any, httpx2.AsyncClient, Jwks]]:
    jwks = Jwks(("k1", RSA_KEY))
    # auth_failures_per_minute=0: this test sends dozens of bad tokens from one address on purpose.
    update = {"jwt_secret": None, "jwt_jwks_url": "https://idp.invalid/jwks", "auth_failures_per_minute": 0}
    runtime = await build(settings.model_copy(update=update))
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(jwks.handler))
    runtime.verifier = TokenVerifier(
        secret=None,
        issuer="doable",
        audience="doable",
        jwks=JwksCache("https://idp.invalid/jwks", client=client, min_refresh_seconds=0),
    )
    try:
        app = create_app(runtime)
        async with lifespan_running(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
                yield app, http, jwks
    finally:
        await client.aclose()
        await runtime.aclose()


def rs256(key: rsa.RSAPrivateKey, kid: str | None, **over: object) -> str:
    return jwt.encode(claims(**over), key, algorithm="RS256", headers={"kid": kid} if kid else None)


async def test_jwks_tokens_confusion_and_rotation_on_every_surface(
    jwks_app: tuple[Any, httpx2.AsyncClient, Jwks],
) -> None:
    app, http, jwks = jwks_app
    good = rs256(RSA_KEY, "k1")
    statuses = await surfaces(app, http, good)
    assert statuses["rest"] == 200 and statuses["mcp"] == 200 and statuses["chatkit"] == 200, statuses

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "hs256 keyed with the public key": _hs256_with_public_key(),
        "hs256 keyed with the shared test secret": jwt.encode(claims(), JWT_SECRET, algorithm="HS256", headers={"kid": "k1"}),
        "alg none": jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"}),
        "signed by a key not in the set": rs256(other, "k1"),
        "unknown kid": rs256(other, "k9"),
        "expired": rs256(RSA_KEY, "k1", exp=int(time.time()) - 3600),
        "wrong audience": rs256(RSA_KEY, "k1", aud="nope"),
        "wrong issuer": rs256(RSA_KEY, "k1", iss="nope"),
    }
    for name, token in refused.items():
        statuses = await surfaces(app, http, token)
        assert set(statuses.values()) == {401}, (name, statuses)

    # Rotation: the provider drops k1 and signs with k2; the app follows without a restart.
    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.serve(("k2", new))
    rotated = rs256(new, "k2", sub="bob")
    statuses = await surfaces(app, http, rotated)
    assert statuses["rest"] == 200 and statuses["mcp"] == 200 and statuses["chatkit"] == 200, statuses
    # ... and the retired key is no longer accepted once the set no longer has it.
    assert set((await surfaces(app, http, rs256(RSA_KEY, "k1"))).values()) == {401}


async def test_an_identity_provider_outage_is_a_503_on_every_surface_not_a_500(
    jwks_app: tuple[Any, httpx2.AsyncClient, Jwks],
) -> None:
    """The keys cannot be fetched: no token can be verified, and that is the server's trouble
    (503, try again), not the caller's (401) and never a 500 (MCP's auth runs in the SDK's
    middleware, below Doable's error handlers)."""
    _app, http, jwks = jwks_app
    jwks.down = True
    token = rs256(RSA_KEY, "k-unknown-forces-a-fetch")
    headers = {"Authorization": f"Bearer {token}"}
    rest = await http.get("/api/tasks", headers=headers)
    mcp = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**headers, "accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"},
    )
    assert (rest.status_code, mcp.status_code) == (503, 503), (rest.text, mcp.text)
    assert mcp.headers["retry-after"]
