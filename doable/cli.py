"""The `doable` command: serve, mcp (stdio), token, migrate."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import structlog

from doable import logs
from doable.domain.errors import DoableError
from doable.settings import Settings

log = structlog.get_logger("doable.cli")


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


async def _serve(settings: Settings) -> None:
    import uvicorn

    from doable.runtime import build
    from doable.web.app import create_app, public_url

    runtime = await build(settings)
    try:
        app = create_app(runtime)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False, lifespan="on"
        )
        server = uvicorn.Server(config)
        base = public_url(runtime)
        log.info("doable.serving", url=base, mcp=f"{base}/mcp", runtime=settings.runtime)
        print(
            f"Doable is running at {base}  (MCP: {base}/mcp, REST: {base}/api/tasks, docs: {base}/docs)\n"
            f"Get a token:  doable token --user alice",
            file=sys.stderr,
            flush=True,
        )
        await server.serve()
    finally:
        await runtime.aclose()


async def _mcp_stdio(settings: Settings) -> None:
    from doable.auth import InvalidToken
    from doable.runtime import build
    from mcp_server.identity import fixed_user
    from mcp_server.server import build_mcp

    runtime = await build(settings)
    try:
        if settings.token is not None:
            try:
                identity = await runtime.verifier.verify(settings.token.get_secret_value())
            except InvalidToken as exc:
                raise SystemExit(f"DOABLE_TOKEN is not valid: {exc}") from None
            user = identity.user_id
        elif settings.runtime == "embedded" and not settings.jwt_jwks_url:
            user = settings.local_user
        else:
            raise SystemExit("set DOABLE_TOKEN to a token for the user this MCP server acts for")
        log.info("mcp.stdio.start", user_id=user)
        await build_mcp(runtime.service, fixed_user(user)).run_stdio_async()
    finally:
        await runtime.aclose()


def _token(settings: Settings, user: str, ttl: str) -> str:
    from doable.auth import ensure_local_secret, mint, parse_ttl
    from doable.service import check_user_id

    if settings.jwt_jwks_url:
        raise SystemExit("tokens come from your identity provider when DOABLE_JWT_JWKS_URL is set")
    check_user_id(user)
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ensure_local_secret(settings.data_dir)
    try:
        seconds = parse_ttl(ttl)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    return mint(secret, user_id=user, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_seconds=seconds)


async def _migrate(settings: Settings) -> None:
    from doable.storage.sql.engine import create_engine, migrate

    engine = create_engine(settings.effective_database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    print("database is at the newest schema", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="doable", description="Doable: tasks for people and their AI agents.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the API (MCP, REST) with embedded storage by default")
    serve.add_argument("--host", help="bind address (default 127.0.0.1; env DOABLE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000; env DOABLE_PORT)")
    sub.add_parser("mcp", help="serve the MCP tools over stdio (Claude Desktop)")
    token = sub.add_parser("token", help="mint a development token")
    token.add_argument("--user", required=True, help="the user id (token subject)")
    token.add_argument("--ttl", default="8h", help="lifetime: 90s, 15m, 8h, 7d (default 8h)")
    sub.add_parser("migrate", help="apply database migrations")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings = _settings(host=getattr(args, "host", None), port=getattr(args, "port", None))
    except ValueError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    logs.configure(settings.log_format, settings.log_level)
    try:
        if args.command == "serve":
            asyncio.run(_serve(settings))
        elif args.command == "mcp":
            asyncio.run(_mcp_stdio(settings))
        elif args.command == "token":
            print(_token(settings, args.user, args.ttl))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
    except KeyboardInterrupt:
        pass
    except DoableError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
