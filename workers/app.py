"""One worker as its own Dapr app (`doable worker NAME`): health, readiness, metrics and the
routes Dapr calls (subscriptions, job triggers, the sweeper's cron binding).

The app takes its worker and ports ready-made, so the Dapr composition root injects the sidecar
adapters and tests inject fakes; it reads no settings and builds no adapters itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from doable.domain.clock import Clock
from doable.ports.messages import JobHandler
from doable.web.callbacks import callback_router
from doable.web.middleware import RequestContext
from workers.registry import Worker

Readiness = Callable[[], Awaitable[dict[str, str]]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_worker_app(
    worker: Worker,
    *,
    clock: Clock,
    readiness: Readiness | None = None,
    lifespan: Lifespan | None = None,
    app_token: str | None = None,
    on_job: JobHandler | None = None,
) -> FastAPI:
    """The ASGI app of `worker`. `readiness` reports each backend ("ok" or not); `lifespan`
    opens and closes what the worker's ports hold (database engine, sidecar client); `on_job`
    answers the job triggers in place of the worker's own handler (the transport's batching)."""

    @asynccontextmanager
    async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(title=f"Doable {worker.name} worker", version="0.1.0", lifespan=lifespan or no_lifespan)
    app.state.worker = worker

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "worker": worker.name}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        checks = await readiness() if readiness is not None else {}
        ready = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ready else "unavailable", "worker": worker.name, "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(
        callback_router(
            worker.subscriptions, clock=clock, on_job=on_job or worker.on_job, crons=worker.crons, app_token=app_token
        )
    )
    app.add_middleware(RequestContext)
    return app
