"""The record of a client, with the loopback rule of RFC 8252 (7.3): a native app's loopback
redirect URI matches whatever port the app listens on that time, since it picks a free one."""

from __future__ import annotations

from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

_LOOPBACK = {"127.0.0.1", "[::1]", "::1", "localhost"}


def _loopback_match(given: AnyUrl, registered: AnyUrl) -> bool:
    return (
        given.scheme == registered.scheme == "http"
        and given.host in _LOOPBACK
        and given.host == registered.host
        and (given.path or "/") == (registered.path or "/")
        and given.query == registered.query
    )


class Client(OAuthClientInformationFull):
    def validate_redirect_uri(self, redirect_uri: AnyUrl | None) -> AnyUrl:
        if redirect_uri is not None and any(_loopback_match(redirect_uri, r) for r in self.redirect_uris or []):
            return redirect_uri
        return super().validate_redirect_uri(redirect_uri)
