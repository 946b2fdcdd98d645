"""The routes Dapr calls on an app: programmatic subscriptions, event delivery, job triggers and
cron bindings. Used by every worker app (`workers.app`) and, in Dapr mode, by the API for its
own subscriptions (`Runtime.live.subscriptions()`).

- `GET /dapr/subscribe`: each subscription with its component (topology.pubsub_for), route
  `/events/{name}` and the dead-letter topic (not for the dead-letter topic's own consumer, so
  nothing is dead-lettered twice, nor for live topics: a live update is worth nothing later).
- `POST /events/{name}`: a CloudEvent; answers `{"status": "SUCCESS" | "RETRY" | "DROP"}` (never
  DROP from the dead-letter topic's consumer, which is handed even a malformed delivery). A
  batch-first subscription is declared with `bulkSubscribe`, and daprd then POSTs a bulk of entries
  to the same route, answered per entry by the subscription's batch handler (doable.adapters.dapr.deliveries).
- `POST /job/{name}`: a job trigger whose body is the job's data; 2xx done, 500 = retry. Jobs that
  fire together arrive as concurrent requests; at most JOBS_IN_FLIGHT run at once, unless the
  handler batches them (JobBatches, which bounds its batches instead).
- `POST /{binding}` (and `OPTIONS`, which Dapr sends at start-up): a cron tick.

When `app_token` is set (Dapr's APP_API_TOKEN) every call must carry it in `dapr-api-token`;
without one, only loopback clients (the sidecar, in the same pod) are answered.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from doable.adapters.dapr.deliveries import (
    BULK_SUBSCRIBE,
    JobBatches,
    answer_bulk,
    is_bulk,
    message_from_cloudevent,
    read_entries,
    stand_in_message,
)
from doable.domain.clock import Clock
from doable.platform import topology
from doable.platform.metrics import EVENTS_CONSUMED
from doable.ports.messages import (
    Cron,
    Job,
    JobHandler,
    Outcome,
    Subscription,
    outcome_for,
)
from doable.web.loopback import is_loopback

log = structlog.get_logger("doable.callbacks")

# Job handlers running at once per app. Each makes a few sidecar calls, and the sidecar client's
# connection pool (100) must not be exhausted by a burst of triggers (a pool timeout fails the job);
# the others wait their turn, well within daprd's trigger timeout.
JOBS_IN_FLIGHT = 32


def sidecar_only(app_token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A dependency admitting only the sidecar: the app token (APP_API_TOKEN) when configured,
    else loopback, which only the sidecar shares with the app in its pod."""

    async def check(request: Request) -> None:
        if app_token is None:
            if not is_loopback(request.client.host if request.client else None):
                raise HTTPException(status_code=403, detail="Dapr callback routes answer only the local sidecar")
            return
        given = request.headers.get("dapr-api-token", "")
        if not hmac.compare_digest(given.encode(), app_token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong dapr-api-token")

    return check


def job_data(body: bytes) -> dict[str, Any]:
    """A triggered job's data; Dapr may deliver it JSON-encoded twice."""
    value: Any = json.loads(body) if body else {}
    if isinstance(value, str):
        value = json.loads(value)
    if not isinstance(value, dict):
        raise ValueError("job data must be a JSON object")
    return value


def callback_router(
    subscriptions: Sequence[Subscription],
    *,
    clock: Clock,
    on_job: JobHandler | None = None,
    crons: Sequence[Cron] = (),
    app_token: str | None = None,
) -> APIRouter:
    router = APIRouter(tags=["dapr"], dependencies=[Depends(sidecar_only(app_token))], include_in_schema=False)
    by_name = {s.name: s for s in subscriptions}

    @router.get("/dapr/subscribe")
    async def subscribe() -> list[dict[str, Any]]:
        return [_subscription_entry(s) for s in subscriptions]

    @router.post("/events/{name}")
    async def event(name: str, request: Request) -> JSONResponse:
        sub = by_name.get(name)
        if sub is None:
            # Dapr drops a message whose route answers 404.
            return JSONResponse({"status": Outcome.DROP.value}, status_code=404)
        return await _deliver(sub, await request.body())

    if on_job is not None:
        _add_job_route(router, on_job, clock)
    for cron in crons:
        _add_cron(router, cron)
    return router


def _subscription_entry(s: Subscription) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "pubsubname": topology.pubsub_for(s.topic),
        "topic": s.topic,
        "routes": {"default": f"/events/{s.name}"},
    }
    if s.dead_letters and s.topic not in topology.LIVE_TOPICS:
        entry["deadLetterTopic"] = topology.DEAD_LETTER
    if s.batch_handler is not None:
        entry["bulkSubscribe"] = dict(BULK_SUBSCRIBE)
    return entry


async def _deliver(sub: Subscription, body: bytes) -> JSONResponse:
    """One CloudEvent, or a bulk of them (a subscription declared with bulkSubscribe)."""
    try:
        envelope = json.loads(body)
    except ValueError:
        envelope = None
    if is_bulk(envelope):
        return await _deliver_bulk(sub, envelope)
    try:
        message = message_from_cloudevent(envelope)
    except ValueError as exc:
        log.error("events.malformed", subscription=sub.name, error=str(exc))
        if not sub.dead_letters:
            message = stand_in_message(body, str(exc))  # recorded as it is, never dropped
        else:
            EVENTS_CONSUMED.labels(topic=sub.topic, outcome="drop").inc()
            return JSONResponse({"status": Outcome.DROP.value})
    structlog.contextvars.bind_contextvars(
        subscription=sub.name, topic=sub.topic, message_id=message.id, trace_id=message.trace_id
    )
    try:
        outcome = await sub.handler(message)
    except Exception as exc:
        outcome = outcome_for(exc)
        log.warning("events.handler_failed", outcome=outcome.value, error=f"{type(exc).__name__}: {exc}", exc_info=True)
    if outcome is Outcome.DROP and not sub.dead_letters:
        # A DROP would discard it without a dead-letter topic anyway; say so, and never loop.
        log.error("events.dead_letter_discarded", subscription=sub.name)
        outcome = Outcome.SUCCESS
    EVENTS_CONSUMED.labels(topic=sub.topic, outcome=outcome.value.lower()).inc()
    # DROP isn't counted as dead-lettered here: the dead-letter consumer counts each once, given-up retries too.
    return JSONResponse({"status": outcome.value})


async def _deliver_bulk(sub: Subscription, envelope: dict[str, Any]) -> JSONResponse:
    entries = read_entries(envelope)
    structlog.contextvars.bind_contextvars(subscription=sub.name, topic=sub.topic, bulk_size=len(entries))
    answers = await answer_bulk(sub, entries)
    for _, outcome in answers:
        EVENTS_CONSUMED.labels(topic=sub.topic, outcome=outcome.value.lower()).inc()
    return JSONResponse({"statuses": [{"entryId": entry_id, "status": o.value} for entry_id, o in answers]})


def _add_job_route(router: APIRouter, handle_job: JobHandler, clock: Clock) -> None:
    # A batching handler bounds the batches it runs; a trigger waiting for the next batch is
    # only a future, and must be free to join it (a bound on triggers would cap the batch size).
    jobs_limiter = None if isinstance(handle_job, JobBatches) else anyio.CapacityLimiter(JOBS_IN_FLIGHT)

    @router.post("/job/{name}")
    async def job(name: str, request: Request) -> Response:
        try:
            data = job_data(await request.body())
        except ValueError as exc:
            log.error("jobs.malformed", job=name, error=str(exc))
            return Response(status_code=200)  # retrying a malformed job cannot help
        structlog.contextvars.bind_contextvars(job=name)
        try:
            job = Job(name=name, due_at=clock.now(), data=data)
            if jobs_limiter is None:
                outcome = await handle_job(job)
            else:
                async with jobs_limiter:
                    outcome = await handle_job(job)
        except Exception as exc:
            outcome = outcome_for(exc)
            log.warning(
                "jobs.handler_failed", outcome=outcome.value, error=f"{type(exc).__name__}: {exc}", exc_info=True
            )
        # Only a non-2xx answer makes Dapr apply the job's failure policy (retry).
        return Response(status_code=500 if outcome is Outcome.RETRY else 200)


def _add_cron(router: APIRouter, cron: Cron) -> None:
    async def tick() -> Response:
        try:
            outcome = await cron.handler()
        except Exception as exc:
            outcome = outcome_for(exc)
            log.warning("cron.failed", binding=cron.binding, error=f"{type(exc).__name__}: {exc}", exc_info=True)
        return Response(status_code=500 if outcome is Outcome.RETRY else 200)

    async def probe() -> Response:
        return Response(status_code=200)

    router.add_api_route(f"/{cron.binding}", tick, methods=["POST"])
    router.add_api_route(f"/{cron.binding}", probe, methods=["OPTIONS"])
