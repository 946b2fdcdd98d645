"""The consent page of the built-in authorization server: the person at this machine approves
(or denies) a client's request to act as the local user.

It answers only where the console's local sign-in would (embedded mode, a loopback client, no
forwarding proxy): that is what makes the person at the page the local user. The form carries a
one-time token that must match a cookie only this page sets (SameSite=Strict), so another site
cannot submit it; the page cannot be framed.
"""

from __future__ import annotations

import hmac
from html import escape
from urllib.parse import urlsplit

from mcp.server.auth.provider import construct_redirect_uri
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from doable.oauth import scopes
from doable.oauth.provider import BuiltinAuthorizationServer, PendingConsent
from doable.web.console import local_signin_allowed
from doable.web.loopback import is_loopback

PATH = "/oauth/consent"
CSRF_COOKIE = "doable_consent"
_SCOPE_TEXT = {
    scopes.READ: "see your tasks, reminders and history",
    scopes.WRITE: "add, change, complete and delete your tasks",
}
_STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1d2433}"
    "h1{font-size:1.4rem}code{background:#eef1f6;padding:0 .3em;border-radius:3px}"
    ".warn{background:#fff4e0;border-left:4px solid #e0a030;padding:.5rem .8rem}"
    "button{font-size:1rem;padding:.5rem 1.2rem;margin-right:.6rem;border-radius:6px;border:1px solid #8a94a6}"
    "button[value=approve]{background:#2456d3;color:#fff;border-color:#2456d3}"
)


def _headers(form_target: str | None) -> dict[str, str]:
    # The approval is a form post answered by a redirect to the client: the client's origin must
    # be an allowed form action too, or the browser stops at the redirect.
    actions = "'self'" + (f" {form_target}" if form_target else "")
    return {
        "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; form-action {actions}; "
        "frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
        # Not no-referrer: with it the browser sends `Origin: null` on the form post, and the post's
        # origin is part of the local-user check.
        "Referrer-Policy": "same-origin",
    }


def _page(title: str, body: str, status: int = 200, form_target: str | None = None) -> HTMLResponse:
    html = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<meta name=viewport content='width=device-width'><style>{_STYLE}</style></head><body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_headers(form_target))


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def consent_routes(server: BuiltinAuthorizationServer, local_user: str) -> list[Route]:
    async def show(request: Request) -> Response:
        if not local_signin_allowed(request):
            return _refused()
        consent = server.pending(request.query_params.get("request", ""))
        if consent is None:
            return _expired()
        redirect = str(consent.params.redirect_uri)
        response = _page("Connect to Doable", _form(request.query_params["request"], consent, local_user), form_target=_origin(redirect))
        response.set_cookie(CSRF_COOKIE, consent.csrf, httponly=True, samesite="strict", path=PATH, max_age=600)
        return response

    async def answer(request: Request) -> Response:
        if not local_signin_allowed(request):
            return _refused()
        form = await request.form()
        request_id, csrf = str(form.get("request", "")), str(form.get("csrf", ""))
        consent = server.pending(request_id)
        if consent is None:
            return _expired()
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (hmac.compare_digest(csrf, consent.csrf) and hmac.compare_digest(cookie, consent.csrf)):
            return _page("Not sent from this page", "<h1>Not sent from this page</h1><p>Open the link from your app again.</p>", 403)
        server.answer(request_id)
        params = consent.params
        if form.get("decision") == "approve":
            code = await server.approve(consent, local_user)
            target = construct_redirect_uri(str(params.redirect_uri), code=code, state=params.state, iss=server.issuer)
        else:
            target = construct_redirect_uri(
                str(params.redirect_uri),
                error="access_denied",
                error_description="the user denied the request",
                state=params.state,
                iss=server.issuer,
            )
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        response.delete_cookie(CSRF_COOKIE, path=PATH)
        return response

    return [Route(PATH, show, methods=["GET"]), Route(PATH, answer, methods=["POST"])]


def _form(request_id: str, consent: PendingConsent, local_user: str) -> str:
    client = consent.client
    name = client.client_name or client.client_id
    redirect = urlsplit(str(consent.params.redirect_uri))
    items = "".join(f"<li>{escape(_SCOPE_TEXT.get(s, s))} <code>{escape(s)}</code></li>" for s in consent.params.scopes or [])
    warning = ""
    if is_loopback(redirect.hostname) or redirect.hostname == "localhost":
        warning = (
            "<p class=warn>The answer goes to a program on this computer "
            f"(<code>{escape(redirect.netloc)}</code>). Approve only if you just started the connection yourself.</p>"
        )
    return (
        f"<h1>Connect {escape(name)} to Doable?</h1>"
        f"<p><b>{escape(name)}</b> (<code>{escape(client.client_id)}</code>) asks to act as "
        f"<b>{escape(local_user)}</b> and:</p><ul>{items}</ul>"
        f"<p>After your answer you go back to <code>{escape(redirect.scheme)}://{escape(redirect.netloc)}</code>.</p>"
        f"{warning}"
        f"<form method=post action='{PATH}'>"
        f"<input type=hidden name=request value='{escape(request_id)}'>"
        f"<input type=hidden name=csrf value='{escape(consent.csrf)}'>"
        "<button type=submit name=decision value=approve>Approve</button>"
        "<button type=submit name=decision value=deny>Deny</button></form>"
    )


def _refused() -> HTMLResponse:
    return _page(
        "Not available here",
        "<h1>Approve connections on the computer Doable runs on</h1><p>Only the local user can connect a client, "
        "from a browser on this machine. A server with accounts elsewhere names its identity provider in "
        "<code>DOABLE_OAUTH_ISSUER</code>.</p>",
        403,
    )


def _expired() -> HTMLResponse:
    return _page(
        "Request expired", "<h1>This request expired or was answered</h1><p>Start the connection again from your app.</p>", 400
    )
