"""HTTP routes of the state management API.

Reference: https://docs.dapr.io/reference/api/state_api/ . Status codes for ETag
problems (409 mismatch, 400 invalid) and for transactions (every store error is a
500 ERR_STATE_TRANSACTION, including an ETag mismatch) come from daprd's handlers
in dapr/dapr `pkg/api/http/http.go` (onPostState, etagError, onPostStateTransaction).

Every store call runs under the sidecar's outbound Resiliency policy for the store
(`ComponentOutboundPolicy(store, Statestore)` in each handler at v1.16.19-v1.18.3):
* save: `pkg/components/state/bulk.go` PerformBulkStoreOperation: an ETag error is permanent
  (never retried, but still a circuit-breaker failure); with several items only the items that
  failed with another error are retried;
* get, bulk get, delete: the component call is retried as a whole (a delete's ETag mismatch too);
* transaction: `transactionalStore.Multi(r.Context(), ...)`: an ETag mismatch or first-write
  conflict is an ordinary error, retried and counted by the breaker, and the call ignores the
  policy's deadline, so a transaction reported as "context deadline exceeded" may still commit.
Policy errors read as Go prints them: "context deadline exceeded", "circuit breaker is open".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .cloudevents import format_time
from .core import DoubleCore, query_metadata, sidecar_of
from .errors import DaprError, malformed_request
from .resiliency import Permanent
from .state import (
    DeleteOperation,
    EtagInvalid,
    EtagMismatch,
    IllegalKey,
    SetOperation,
    StateItem,
    StateStoreFailure,
    check_options,
    modified_key,
    original_key,
    parse_ttl,
)


def _json_body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise malformed_request(str(exc)) from exc


def _store_key(core: DoubleCore, store: str, app_id: str, key: str) -> str:
    try:
        return modified_key(key, store=store, app_id=app_id, strategy=core.key_prefix_strategy(store, app_id))
    except IllegalKey as exc:
        raise DaprError(400, "ERR_MALFORMED_REQUEST", str(exc), reason="DAPR_STATE_ILLEGAL_KEY") from exc


def _etag(value: Any) -> str | None:
    if value is None or value == "":
        return None  # an empty ETag counts as "no ETag" (HasETag)
    if not isinstance(value, str):
        raise malformed_request("etag must be a string")
    return value


def _string_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise malformed_request("metadata must be an object of strings")
    return dict(value)


def _set_operation(
    core: DoubleCore, store: str, app_id: str, item: Any, url_metadata: Mapping[str, str]
) -> SetOperation | StateStoreFailure:
    """Validate one save request; store-level problems are returned (not raised) as daprd defers them."""
    if not isinstance(item, Mapping):
        raise malformed_request("each state item must be an object")
    if not item.get("key"):
        raise DaprError(400, "ERR_MALFORMED_REQUEST", '"key" is a required field')
    key = _store_key(core, store, app_id, str(item["key"]))
    metadata = {**_string_map(item.get("metadata")), **url_metadata}
    etag = _etag(item.get("etag"))
    try:
        first_write = check_options(item.get("options"))
        ttl = parse_ttl(metadata)
    except StateStoreFailure as exc:
        return exc
    return SetOperation(key, json.dumps(item.get("value")), etag, first_write, ttl)


async def _component(core: DoubleCore) -> None:
    """The time the store takes (the `state_latency` fault), inside the component call."""
    if core.faults.state_latency > 0:
        await asyncio.sleep(core.faults.state_latency)


class _BulkSaveFailed(StateStoreFailure):
    def __init__(self, errors: list[StateStoreFailure]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


def _status_for(error: BaseException) -> int:
    if isinstance(error, EtagMismatch):
        return 409
    if isinstance(error, EtagInvalid):
        return 400
    return 500


async def save_state(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    store = request.path_params["store"]
    core.key_prefix_strategy(store, app_id)
    items = _json_body(await request.body())
    if not isinstance(items, list):
        raise malformed_request("expected a JSON array of state items")
    url_metadata = query_metadata(request)
    pending = [_set_operation(core, store, app_id, item, url_metadata) for item in items]
    now = core.clock.now()

    async def save() -> None:
        # Several items are saved one by one, not atomically (daprd's default BulkSet).
        nonlocal pending
        await _component(core)
        errors: list[StateStoreFailure] = []
        retry: list[SetOperation | StateStoreFailure] = []
        for op in pending:
            try:
                if isinstance(op, StateStoreFailure):
                    raise op
                await core.state.set(store, op, now)
            except StateStoreFailure as exc:
                errors.append(exc)
                if not isinstance(exc, EtagMismatch | EtagInvalid):
                    retry.append(op)
        if not errors:
            return
        failure = errors[0] if len(pending) == 1 else _BulkSaveFailed(errors)
        if not retry:
            raise Permanent(failure)  # only ETag errors: bulk.go makes them permanent
        pending = retry
        raise failure

    try:
        await core.outbound(app_id, store, save)
    except Exception as exc:
        errors = exc.errors if isinstance(exc, _BulkSaveFailed) else [exc]
        # The first ETag error decides the status, as errors.As on the joined errors does.
        status = next((_status_for(e) for e in errors if isinstance(e, EtagMismatch | EtagInvalid)), 500)
        raise DaprError(status, "ERR_STATE_SAVE", f"failed saving state in state store {store}: {exc}") from exc
    return Response(status_code=204)


async def get_state(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    store, key = request.path_params["store"], request.path_params["key"]
    stored = _store_key(core, store, app_id, key)

    async def get() -> StateItem | None:
        await _component(core)
        return await core.state.get(store, stored, core.clock.now())

    try:
        item = await core.outbound(app_id, store, get)
    except Exception as exc:
        # onGetState: ErrStateGet (pkg/messages/predefined.go), 500.
        raise DaprError(500, "ERR_STATE_GET", f"fail to get {key} from state store {store}: {exc}") from exc
    if item is None:
        return Response(status_code=204)
    headers = {"ETag": item.etag}
    if item.expires_at is not None:
        # Response metadata travels as `metadata.<name>` headers (TTL how-to:
        # https://docs.dapr.io/developing-applications/building-blocks/state-management/state-store-ttl/).
        headers["metadata.ttlExpireTime"] = format_time(item.expires_at)
    return Response(item.value_json.encode(), status_code=200, media_type="application/json", headers=headers)


async def bulk_get_state(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    store = request.path_params["store"]
    core.key_prefix_strategy(store, app_id)
    body = _json_body(await request.body())
    keys = body.get("keys") if isinstance(body, Mapping) else None
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise malformed_request("keys must be an array of strings")
    stored = [_store_key(core, store, app_id, k) for k in keys]

    async def bulk_get() -> dict[str, StateItem]:
        await _component(core)
        return await core.state.bulk_get(store, stored, core.clock.now())

    try:
        found = await core.outbound(app_id, store, bulk_get)
    except Exception as exc:
        raise DaprError(500, "ERR_STATE_BULK_GET", str(exc)) from exc  # onBulkGetState: err.Error() only
    # The stored JSON goes out as it is, spliced into the answer (daprd sends each value as raw
    # JSON too: `data` is a json.RawMessage), not parsed and encoded again.
    entries: list[str] = []
    for key in stored:
        entry = '{"key":' + json.dumps(original_key(key))
        item = found.get(key)
        if item is not None:  # a missing key comes back with neither data nor etag
            entry += ',"data":' + item.value_json + ',"etag":' + json.dumps(item.etag)
            if item.expires_at is not None:
                entry += ',"metadata":' + json.dumps({"ttlExpireTime": format_time(item.expires_at)})
        entries.append(entry + "}")
    return Response(("[" + ",".join(entries) + "]").encode(), media_type="application/json")


async def delete_state(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    store, key = request.path_params["store"], request.path_params["key"]
    stored = _store_key(core, store, app_id, key)
    etag = request.headers.get("if-match") or None

    async def delete() -> None:
        await _component(core)
        await core.state.delete(store, DeleteOperation(stored, etag))

    try:
        await core.outbound(app_id, store, delete)
    except Exception as exc:
        raise DaprError(_status_for(exc), "ERR_STATE_DELETE", f"failed deleting state with key {key}: {exc}") from exc
    return Response(status_code=204)


async def state_transaction(request: Request) -> Response:
    core, app_id = sidecar_of(request)
    store = request.path_params["store"]
    core.key_prefix_strategy(store, app_id)
    body = _json_body(await request.body())
    if not isinstance(body, Mapping) or not isinstance(body.get("operations", []), list):
        raise malformed_request("expected {operations: [...]}")
    url_metadata = query_metadata(request)
    shared_metadata = {**_string_map(body.get("metadata")), **url_metadata}
    operations: list[SetOperation | DeleteOperation] = []
    deferred: list[StateStoreFailure] = []
    for entry in body.get("operations") or []:
        kind = entry.get("operation") if isinstance(entry, Mapping) else None
        request_body = entry.get("request") if isinstance(entry, Mapping) else None
        if kind not in ("upsert", "delete"):
            raise DaprError(400, "ERR_NOT_SUPPORTED_STATE_OPERATION", f"operation type {kind} not supported")
        if not isinstance(request_body, Mapping):
            raise malformed_request("each operation needs a request object")
        if not request_body.get("key"):
            # The component, not daprd, rejects this, so it surfaces as a transaction error.
            deferred.append(StateStoreFailure(f"missing key in {'set' if kind == 'upsert' else 'delete'} operation"))
        elif kind == "upsert":
            op = _set_operation(core, store, app_id, request_body, shared_metadata)
            if isinstance(op, StateStoreFailure):
                deferred.append(op)
            else:
                operations.append(op)
        else:
            key = _store_key(core, store, app_id, str(request_body["key"]))
            operations.append(DeleteOperation(key, _etag(request_body.get("etag"))))
    if not operations and not deferred:
        return Response(status_code=204)
    now = core.clock.now()

    async def multi() -> None:
        await _component(core)
        if deferred:
            raise deferred[0]
        await core.state.transaction(store, operations, now)

    try:
        # Multi gets r.Context(), not the policy's: it runs on after a timeout (honours_deadline=False).
        await core.outbound(app_id, store, multi, honours_deadline=False)
    except Exception as exc:
        raise DaprError(500, "ERR_STATE_TRANSACTION", f"error while executing state transaction: {exc}") from exc
    return Response(status_code=204)


ROUTES = [
    Route("/v1.0/state/{store}", save_state, methods=["POST", "PUT"]),
    Route("/v1.0/state/{store}/bulk", bulk_get_state, methods=["POST", "PUT"]),
    Route("/v1.0/state/{store}/transaction", state_transaction, methods=["POST", "PUT"]),
    Route("/v1.0/state/{store}/{key}", get_state, methods=["GET"]),
    Route("/v1.0/state/{store}/{key}", delete_state, methods=["DELETE"]),
]
