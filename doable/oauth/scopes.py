"""The scopes an MCP token can carry, and what each one implies.

`tasks:read` opens the tools that only read (list, search, get, profile, notifications, history);
`tasks:write` the ones that change something, and reading too (every change returns the task it
changed, so a writer reads anyway). `tasks` (the chat agent's own tokens) is both.
"""

from __future__ import annotations

from collections.abc import Iterable

READ = "tasks:read"
WRITE = "tasks:write"
ALL = "tasks"
SUPPORTED = (READ, WRITE)

# A broader scope implies narrower ones (the MCP authorization spec asks servers to honour this).
_IMPLIES = {ALL: {ALL, READ, WRITE}, WRITE: {WRITE, READ}, READ: {READ}}


def granted(scopes: Iterable[str]) -> frozenset[str]:
    """Every scope `scopes` grants, implied ones included (unknown scopes grant nothing)."""
    out: set[str] = set()
    for scope in scopes:
        out |= _IMPLIES.get(scope, set())
    return frozenset(out)


def missing(needed: Iterable[str], scopes: Iterable[str]) -> list[str]:
    """The scopes of `needed` that `scopes` does not grant, sorted."""
    return sorted(set(needed) - granted(scopes))


def from_claims(claims: dict[str, object]) -> list[str] | None:
    """The scopes a JWT access token carries: `scope` (RFC 9068/8693, space separated), or `scp`
    (a list or a string, as Okta and Entra write it). None when the token has neither."""
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list):
            return [v for v in value if isinstance(v, str)]
    return None
