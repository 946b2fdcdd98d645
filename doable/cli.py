"""The `doable` command: serve, mcp (stdio), token, migrate, worker."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from collections.abc import Coroutine, Sequence
from types import FrameType
from typing import Any

import structlog

from doable.domain.errors import DoableError
from doable.platform import logs
from doable.platform.settings import Settings
from doable.platform.topology import WORKER_APP_IDS

log = structlog.get_logger("doable.cli")


def _settings(**overrides: object) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]


def _server_config(app: Any, settings: Settings, **options: Any) -> Any:
    import uvicorn

    return uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False, lifespan="on", **options
    )


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run a server on uvloop when installed (faster sockets and timers), else on asyncio's loop:
    the CLI starts the loop itself, so uvicorn's own choice (loop="auto") never applies."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


async def _serve(settings: Settings) -> None:
    import uvicorn

    class _Server(uvicorn.Server):
        """Sets `listening` once the sockets are open and the app's startup is done."""

        def __init__(self, config: uvicorn.Config, listening: asyncio.Event) -> None:
            super().__init__(config)
            self.listening = listening

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            self.listening.set()

    from doable.bootstrap import build
    from doable.web.app import create_app, public_url
    from doable.web.limits import server_options

    runtime = await build(settings)
    try:
        # The chat server and the MCP side are built once the server listens: `doable serve` is
        # ready without the chat stack and the MCP SDK (a request for them that comes first waits).
        listening = asyncio.Event()
        app = create_app(runtime, deferred_until=listening)
        config = _server_config(
            app,
            settings,
            # Open live streams (SSE) never end by themselves; don't let them hold up a shutdown.
            timeout_graceful_shutdown=5,
            # Deadlines for heads and keep-alive, the largest head (doable.web.limits).
            **server_options(settings),
        )
        server = _Server(config, listening)
        uvicorn_exit = server.handle_exit

        def handle_exit(sig: int, frame: FrameType | None) -> None:
            # End live streams at once; uvicorn would otherwise wait for them until its timeout.
            loop.call_soon_threadsafe(runtime.live.close_all, "server shutting down")
            uvicorn_exit(sig, frame)

        loop = asyncio.get_running_loop()
        server.handle_exit = handle_exit  # type: ignore[method-assign]
        base = public_url(settings)
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
    from doable.bootstrap import build
    from doable.platform.auth import InvalidToken
    from mcp_server.identity import fixed_user
    from mcp_server.server import build_mcp, request_state_security

    runtime = await build(settings)
    try:
        if settings.token is not None:
            try:
                identity = await runtime.verifier.verify(settings.token.get_secret_value())
            except InvalidToken as exc:
                raise SystemExit(f"DOABLE_TOKEN is not valid: {exc}") from None
            user = identity.user_id
        elif runtime.standalone and not settings.jwt_jwks_url:
            user = settings.local_user
        else:
            raise SystemExit("set DOABLE_TOKEN to a token for the user this MCP server acts for")
        if settings.timezone and (await runtime.service.get_profile(user)).timezone != settings.timezone:
            await runtime.service.set_timezone(user, settings.timezone)
        # Claude Desktop may be all that runs: then this process is the one that sends reminders and
        # creates next occurrences (standalone; in Dapr mode the workers are apps of their own).
        workers = runtime.standalone and settings.mcp_stdio_workers
        log.info("mcp.stdio.start", user_id=user, workers=workers)
        if workers:
            await runtime.start()
        # The same tool registry as /mcp over HTTP (doable.web.app.create_app).
        mcp = build_mcp(
            runtime.service,
            fixed_user(user),
            inbox=runtime.inbox,
            history=runtime.history,
            request_state=request_state_security(
                [key.get_secret_value() for key in settings.mcp_request_state_keys],
                settings.internal_token_secret.get_secret_value()
                if settings.internal_token_secret
                else runtime.signing_secret,
                replicated=not runtime.standalone,
            ),
        )
        await mcp.run_stdio_async()
    finally:
        await runtime.aclose()


def _token(settings: Settings, user: str, ttl: str) -> str:
    from doable.bootstrap import signing_settings
    from doable.platform.auth import ensure_local_secret, mint, parse_ttl
    from doable.usecases.service import check_user_id

    check_user_id(user)
    try:
        seconds = parse_ttl(ttl)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    try:
        # Dapr mode: the key the API verifies with, from the secret store (never a local file).
        settings = asyncio.run(signing_settings(settings))
    except DoableError as exc:
        raise SystemExit(exc.message) from None
    if settings.jwt_jwks_url:
        raise SystemExit("tokens come from your identity provider when DOABLE_JWT_JWKS_URL is set")
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ensure_local_secret(settings.data_dir)
    return mint(secret, user_id=user, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_seconds=seconds)


async def _migrate(settings: Settings) -> None:
    from doable.bootstrap import migrate_database

    await migrate_database(settings)
    print("database is at the newest schema", file=sys.stderr)


async def _worker(settings: Settings, name: str) -> None:
    import uvicorn

    from doable.bootstrap import WrongRuntime, worker_app

    try:
        app = await worker_app(settings, name)
    except WrongRuntime as exc:
        raise SystemExit(exc.message) from None
    log.info("doable.worker", worker=name, port=settings.port)
    await uvicorn.Server(_server_config(app, settings)).serve()


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
    worker = sub.add_parser("worker", help="run one worker as its own Dapr app (Dapr mode)")
    worker.add_argument("name", choices=sorted(WORKER_APP_IDS), help="which worker")
    worker.add_argument("--host", help="bind address (default 127.0.0.1; env DOABLE_HOST)")
    worker.add_argument("--port", type=int, help="port (default 8000; env DOABLE_PORT)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        settings = _settings(host=getattr(args, "host", None), port=getattr(args, "port", None))
    except ValueError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    logs.configure(settings.log_format, settings.log_level)
    logs.register_secret(
        *(
            secret.get_secret_value() if secret is not None else None
            for secret in (
                settings.jwt_secret,
                settings.token,
                settings.dapr_api_token,
                settings.app_api_token,
                settings.openai_api_key,
                settings.internal_token_secret,
            )
        )
    )
    try:
        if args.command == "serve":
            _run(_serve(settings))
        elif args.command == "mcp":
            asyncio.run(_mcp_stdio(settings))
        elif args.command == "token":
            print(_token(settings, args.user, args.ttl))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "worker":
            _run(_worker(settings, args.name))
    except KeyboardInterrupt:
        pass
    except DoableError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
