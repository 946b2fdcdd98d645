"""The WWW-Authenticate challenges of the MCP endpoint (RFC 6750 section 3, RFC 9728 section 5.1)."""

from __future__ import annotations

import re

# RFC 6750 3: auth-param values are quoted strings without '"' and '\\' (then they need no escaping).
_UNSAFE = re.compile(r'[^\x20-\x21\x23-\x5b\x5d-\x7e]')


def _quoted(value: str, limit: int = 300) -> str:
    return '"' + _UNSAFE.sub("?", value)[:limit] + '"'


def bearer_challenge(
    *,
    error: str | None = None,
    description: str | None = None,
    scope: str | None = None,
    resource_metadata: str | None = None,
) -> str:
    """`Bearer error=..., error_description=..., scope=..., resource_metadata=...` with only the
    parameters given. A request without credentials gets no error code (RFC 6750 3.1); every
    challenge names the metadata (so a client finds the authorization server) and the scopes."""
    params = []
    if error:
        params.append(f"error={_quoted(error)}")
    if description:
        params.append(f"error_description={_quoted(description, 200)}")
    if scope:
        params.append(f"scope={_quoted(scope)}")
    if resource_metadata:
        params.append(f"resource_metadata={_quoted(resource_metadata, 2000)}")
    return "Bearer " + ", ".join(params) if params else "Bearer"
