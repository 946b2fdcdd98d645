"""HTTP routes of the Jobs API (`/v1.0/jobs/{name}`, and the older `/v1.0-alpha1/jobs/{name}`).

Reference: https://docs.dapr.io/reference/api/jobs_api/ . The body is decoded the way
daprd's protojson decoder does (JSON or proto field names, unknown fields ignored).
Errors mirror dapr/dapr `pkg/api/http/jobs.go`, `pkg/api/universal/jobs.go` and
`pkg/api/errors/scheduler.go`, checked against daprd's integration tests
(`tests/integration/suite/daprd/jobs/http/errors.go`): no schedule and no dueTime ->
400 DAPR_SCHEDULER_SCHEDULE_EMPTY; a name in the body -> 400 DAPR_SCHEDULER_JOB_NAME;
an existing name without `overwrite` -> 409 (gRPC AlreadyExists); an unknown job on GET
-> 500 DAPR_SCHEDULER_GET_JOB (the docs list 500 for "Job doesn't exist"); DELETE of an
unknown job -> 204.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .core import sidecar_of
from .errors import DaprError, malformed_request
from .jobs import JobExists
from .schedule import parse_schedule, parse_time_or_offset

_PROTO_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_UINT32_MAX = 2**32 - 1


def _scheduler_error(status: int, code: str, message: str, app_id: str) -> DaprError:
    return DaprError(status, code, message, reason=code, metadata={"appID": app_id})


def _field(body: Mapping[str, Any], json_name: str, proto_name: str) -> Any:
    return body.get(json_name, body.get(proto_name))


def _optional_string(body: Mapping[str, Any], json_name: str, proto_name: str | None = None) -> str | None:
    value = _field(body, json_name, proto_name or json_name)
    if value is not None and not isinstance(value, str):
        raise malformed_request(f"{json_name} must be a string")
    return value


def _uint32(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _UINT32_MAX:
        raise malformed_request(f"{what} must be an unsigned 32-bit integer")
    return value


def _failure_policy(value: Any) -> dict[str, Any] | None:
    """Normalise to the protojson shape daprd returns: {"constant": {...}} or {"drop": {}}."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise malformed_request("failure_policy must be an object")
    if "drop" in value:
        return {"drop": {}}
    constant = value.get("constant")
    if constant is None:
        return None
    if not isinstance(constant, Mapping):
        raise malformed_request("failure_policy.constant must be an object")
    normalised: dict[str, Any] = {}
    interval = constant.get("interval")
    if interval is not None:
        if not isinstance(interval, str) or not _PROTO_DURATION.match(interval):
            raise malformed_request(f"invalid google.protobuf.Duration value {interval!r}")
        normalised["interval"] = interval
    retries = _uint32(_field(constant, "maxRetries", "max_retries"), "max_retries")
    if retries is not None:
        normalised["maxRetries"] = retries
    return {"constant": normalised}


async def schedule_job(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    name = request.path_params["name"].strip()
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise malformed_request(str(exc)) from exc
    if not isinstance(body, Mapping):
        raise malformed_request("the job must be a JSON object")
    schedule = _optional_string(body, "schedule")
    due_time = _optional_string(body, "dueTime", "due_time")
    ttl = _optional_string(body, "ttl")
    repeats = _uint32(body.get("repeats"), "repeats")
    overwrite = body.get("overwrite", False)
    if not isinstance(overwrite, bool):
        raise malformed_request("overwrite must be a boolean")
    policy = _failure_policy(_field(body, "failurePolicy", "failure_policy"))
    if body.get("name"):
        raise _scheduler_error(400, "DAPR_SCHEDULER_JOB_NAME", "Set the job name in the url only", app_id)
    if not name:
        raise _scheduler_error(400, "DAPR_SCHEDULER_JOB_NAME_EMPTY", "Name is empty", app_id)
    if schedule is None and due_time is None:
        raise _scheduler_error(400, "DAPR_SCHEDULER_SCHEDULE_EMPTY", "Schedule is empty", app_id)
    now = core.clock.now()
    try:
        parsed = parse_schedule(schedule) if schedule is not None else None
        if due_time is not None:
            first = parse_time_or_offset(due_time, now)
        else:
            assert parsed is not None  # checked above: one of schedule / dueTime is present
            first = parsed.next_after(now)
        expires = parse_time_or_offset(ttl, now) if ttl is not None else None
    except ValueError as exc:
        raise _scheduler_error(
            500, "DAPR_SCHEDULER_SCHEDULE_JOB", f"failed to schedule job due to: {exc}", app_id
        ) from exc
    data_json = json.dumps(body["data"]) if "data" in body else None
    try:
        await core.jobs.schedule(
            app_id,
            name,
            schedule=schedule,
            repeats=repeats or None,
            due_time=due_time,
            ttl=ttl,
            data_json=data_json,
            failure_policy=policy,
            overwrite=overwrite,
            first_fire_at=first,
            expires_at=expires,
        )
    except JobExists as exc:
        raise _scheduler_error(
            409,
            "DAPR_SCHEDULER_SCHEDULE_JOB",
            f"failed to schedule job due to: rpc error: code = AlreadyExists desc = job already exists: {name}",
            app_id,
        ) from exc
    return Response(status_code=204)


async def get_job(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    name = request.path_params["name"]
    job = await core.jobs.get(app_id, name)
    if job is None:
        raise _scheduler_error(
            500,
            "DAPR_SCHEDULER_GET_JOB",
            f"failed to get job due to: rpc error: code = NotFound desc = job not found: {name}",
            app_id,
        )
    return JSONResponse(job.describe())


async def delete_job(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    await core.jobs.delete(app_id, request.path_params["name"])
    return Response(status_code=204)


ROUTES = [
    route
    for version in ("v1.0", "v1.0-alpha1")
    for route in (
        Route(f"/{version}/jobs/{{name}}", schedule_job, methods=["POST"]),
        Route(f"/{version}/jobs/{{name}}", get_job, methods=["GET"]),
        Route(f"/{version}/jobs/{{name}}", delete_job, methods=["DELETE"]),
    )
]
