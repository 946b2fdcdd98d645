"""Bad tokens are refused (401) on REST and MCP alike; the identity comes only from a verified token."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from doable.platform.auth import InvalidToken, JwksCache, TokenVerifier
from tests.conftest import JWT_SECRET, auth


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"sub": "alice", "iss": "doable", "aud": "doable", "iat": now, "exp": now + 300}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

BAD_TOKENS = {
    "missing": None,
    "malformed": "not-a-jwt",
    "expired": jwt.encode(claims(exp=int(time.time()) - 3600), JWT_SECRET, algorithm="HS256"),
    "not yet valid": jwt.encode(claims(nbf=int(time.time()) + 3600), JWT_SECRET, algorithm="HS256"),
    "wrong issuer": jwt.encode(claims(iss="evil"), JWT_SECRET, algorithm="HS256"),
    "wrong audience": jwt.encode(claims(aud="someone-else"), JWT_SECRET, algorithm="HS256"),
    "wrong signature": jwt.encode(claims(), "another-secret-" + "y" * 40, algorithm="HS256"),
    "alg none": jwt.encode(claims(), None, algorithm="none"),
    "no subject": jwt.encode(claims(sub=None), JWT_SECRET, algorithm="HS256"),
    "rs256 with unknown key": jwt.encode(claims(), RSA_KEY, algorithm="RS256"),
    "hs512 not allowed": jwt.encode(claims(), JWT_SECRET, algorithm="HS512"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_tokens_get_401_on_rest_and_mcp(http: httpx2.AsyncClient, case: str) -> None:
    token = BAD_TOKENS[case]
    headers = auth(token) if token else {}
    r = await http.get("/api/tasks", headers=headers)
    assert r.status_code == 401, (case, r.text)
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await http.post(
        "/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={**headers, "accept": "application/json, text/event-stream"},
    )
    assert r.status_code == 401, (case, r.text)
    assert "resource_metadata" in r.headers["www-authenticate"]


async def test_small_clock_skew_is_tolerated(http: httpx2.AsyncClient) -> None:
    token = jwt.encode(claims(exp=int(time.time()) - 5), JWT_SECRET, algorithm="HS256")
    assert (await http.get("/api/tasks", headers=auth(token))).status_code == 200


async def test_protected_resource_metadata_is_discoverable(http: httpx2.AsyncClient) -> None:
    r = await http.get("/.well-known/oauth-protected-resource/mcp")
    assert r.status_code == 200 and r.json()["resource"].endswith("/mcp")


def _jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> dict[str, object]:
    out = []
    for kid, key in keys:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        out.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
    return {"keys": out}


async def test_jwks_verification_follows_key_rotation() -> None:
    old, new = RSA_KEY, rsa.generate_private_key(public_exponent=65537, key_size=2048)
    served = {"jwks": _jwks(("k1", old))}

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=served["jwks"])

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    verifier = TokenVerifier(
        secret=None,
        issuer="doable",
        audience="doable",
        jwks=JwksCache("https://idp/jwks", client=client, min_refresh_seconds=0),
    )
    assert (
        await verifier.verify(jwt.encode(claims(), old, algorithm="RS256", headers={"kid": "k1"}))
    ).user_id == "alice"
    served["jwks"] = _jwks(("k2", new))
    rotated = jwt.encode(claims(sub="bob"), new, algorithm="RS256", headers={"kid": "k2"})
    assert (await verifier.verify(rotated)).user_id == "bob"
    # HS/RS confusion: an HS256 token "signed" with the public key is refused outright.
    confused = jwt.encode(claims(), JWT_SECRET, algorithm="HS256", headers={"kid": "k2"})
    with pytest.raises(InvalidToken, match="algorithm"):
        await verifier.verify(confused)
    await client.aclose()


async def test_token_for_one_user_only_ever_acts_as_that_user(
    http: httpx2.AsyncClient, token_for: Callable[..., str]
) -> None:
    await http.post("/api/tasks", json={"title": "mine"}, headers=auth(token_for("alice")))
    assert (await http.get("/api/tasks", headers=auth(token_for("mallory")))).json()["total"] == 0
