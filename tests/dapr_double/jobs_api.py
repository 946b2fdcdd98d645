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

Which paths exist depends on the version (versions.py): `/v1.0-alpha1/jobs/{name}` at 1.16-1.18,
`/v1.0/jobs/{name}` from 1.18 only; elsewhere the path falls through to the invocation fallback.

Past daprd's own checks, the Scheduler hands the job to go-etcd-cron, whose errors come back as a
plain gRPC error (code Unknown, which `apierrors.SchedulerScheduleJob` maps to Internal/500):
"failed to schedule job due to: rpc error: code = Unknown desc = <error>". Checked in
diagridio/go-etcd-cron (`internal/engine/handler/handler.go` addJob, `internal/api/validator/
validator.go`, `internal/scheduler/builder.go` Parse; mirror at 0e8ef88, the rules unchanged in
the v0.9.4 / v0.12.x dapr pins) and dapr/dapr `pkg/scheduler/server/api.go` ScheduleJob,
`pkg/scheduler/server/internal/serialize` (the job key "app||<namespace>||<app id>||<name>"):
* the key, after removing "_", ":", "-" and " ", must be a DNS-1123 subdomain in every
  "||"-separated segment, lower-cased: `job name is invalid "<key>": <k8s validation text>`;
* `job failed validation: ` + "job must have a schedule to repeat" (repeats > 1 without a
  schedule), "defined repeats must be greater than 0" (repeats present and 0), "job must have a
  schedule to have a ttl", a schedule parse error, "ttl format not recognized", "ttl must be
  greater than due time".
The error metadata is {"appID", "namespace"} (`pkg/api/universal/jobs.go`).
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
from .versions import DaprVersion

_PROTO_DURATION = re.compile(r"^-?\d+(\.\d{1,9})?s$")
_UINT32_MAX = 2**32 - 1


_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1123_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def _namespace(request: Request) -> str:
    core, _ = sidecar_of(request)
    return core.effective_namespace or "default"


def _scheduler_error(status: int, code: str, message: str, app_id: str, namespace: str = "default") -> DaprError:
    return DaprError(status, code, message, reason=code, metadata={"appID": app_id, "namespace": namespace})


def job_name_error(key: str) -> str | None:
    """go-etcd-cron validator.JobName on the scheduler key; None when valid."""
    sanitized = key
    for ch in ("_", ":", "-", " "):
        sanitized = sanitized.replace(ch, "")
    for segment in sanitized.lower().split("||"):
        errors = []
        if len(segment) > 253:
            errors.append("must be no more than 253 characters")
        if not _DNS1123_SUBDOMAIN.match(segment):
            errors.append(_DNS1123_MESSAGE)
        if errors:
            return f"job name is invalid {_go_quote(sanitized)}: {', '.join(errors)}"
    return None


def _go_quote(text: str) -> str:
    """Go's %q for printable text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cron_error(message: str, app_id: str, namespace: str) -> DaprError:
    return _scheduler_error(
        500,
        "DAPR_SCHEDULER_SCHEDULE_JOB",
        f"failed to schedule job due to: rpc error: code = Unknown desc = {message}",
        app_id,
        namespace,
    )


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
    namespace = _namespace(request)
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
        # SchedulerURLName is built with the appID only (pkg/api/http/jobs.go).
        raise DaprError(
            400, "DAPR_SCHEDULER_JOB_NAME", "Set the job name in the url only",
            reason="DAPR_SCHEDULER_JOB_NAME", metadata={"appID": app_id},
        )  # fmt: skip
    if not name:
        raise _scheduler_error(400, "DAPR_SCHEDULER_JOB_NAME_EMPTY", "Name is empty", app_id, namespace)
    if schedule is None and due_time is None:
        raise _scheduler_error(400, "DAPR_SCHEDULER_SCHEDULE_EMPTY", "Schedule is empty", app_id, namespace)
    name_error = job_name_error(f"app||{namespace}||{app_id}||{name}")
    if name_error is not None:
        raise _cron_error(name_error, app_id, namespace)
    rule = None
    if schedule is None and repeats is not None and repeats > 1:
        rule = "job must have a schedule to repeat"
    elif repeats is not None and repeats < 1:
        rule = "defined repeats must be greater than 0"
    elif schedule is None and ttl is not None:
        rule = "job must have a schedule to have a ttl"
    if rule is not None:
        raise _cron_error(f"job failed validation: {rule}", app_id, namespace)
    now = core.clock.now()
    try:
        parsed = parse_schedule(schedule) if schedule is not None else None
        if due_time is not None:
            first = parse_time_or_offset(due_time, now)
        else:
            assert parsed is not None  # checked above: one of schedule / dueTime is present
            first = parsed.next_after(now)
    except ValueError as exc:
        raise _cron_error(f"job failed validation: {exc}", app_id, namespace) from exc
    expires = None
    if ttl is not None:
        try:
            expires = parse_time_or_offset(ttl, first if due_time is not None else now)
        except ValueError as exc:
            raise _cron_error("job failed validation: ttl format not recognized", app_id, namespace) from exc
        if due_time is not None and first > expires:
            raise _cron_error("job failed validation: ttl must be greater than due time", app_id, namespace)
    data_json = json.dumps(body["data"]) if "data" in body else None
    try:
        await core.jobs.schedule(
            app_id,
            name,
            schedule=schedule,
            repeats=repeats,
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
            namespace,
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
            _namespace(request),
        )
    return JSONResponse(job.describe())


async def delete_job(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    await core.jobs.delete(app_id, request.path_params["name"])
    return Response(status_code=204)


def routes(version: DaprVersion) -> list[Route]:
    """The Jobs API routes `version` registers (pkg/api/http/jobs.go at its tag)."""
    return [
        route
        for api_version in version.jobs_api_versions
        for route in (
            Route(f"/{api_version}/jobs/{{name}}", schedule_job, methods=["POST"]),
            Route(f"/{api_version}/jobs/{{name}}", get_job, methods=["GET"]),
            Route(f"/{api_version}/jobs/{{name}}", delete_job, methods=["DELETE"]),
        )
    ]


ROUTES = [
    route
    for version in ("v1.0", "v1.0-alpha1")
    for route in (
        Route(f"/{version}/jobs/{{name}}", schedule_job, methods=["POST"]),
        Route(f"/{version}/jobs/{{name}}", get_job, methods=["GET"]),
        Route(f"/{version}/jobs/{{name}}", delete_job, methods=["DELETE"]),
    )
]
