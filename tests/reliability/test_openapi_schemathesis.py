"""schemathesis against the REST API's own OpenAPI schema, with a valid token, on a real
`doable serve`: every operation answers what the schema says (status codes, content types,
bodies), refuses what the schema forbids, and never fails with a 5xx.

Chat has no model here, so a valid chat request gets the documented 503 `chat_unavailable`;
the SSE streams (which never end) and the console's local sign-in are left to their own tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi import checks

from tests.reliability.fuzz import PROFILE, SCALE, record
from tests.reliability.processes import Server, server

EXAMPLES = 20
# The schema gives shapes; the domain's rules are finer than JSON Schema can say (an IANA zone,
# an ISO date, an RRULE, a title of 1-200 characters after trimming): a schema-valid value may
# still get a clear 422, which this check would count as a failure.
EXCLUDED_CHECKS = [checks.positive_data_acceptance]
EXCLUDED_PATHS = ("/api/notifications/stream", "/api/updates/stream", "/api/local/token")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = server(tmp_path_factory.mktemp("schemathesis"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api_schema(served: Server) -> Any:
    spec = httpx2.get(f"{served.base}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=served.base)
    return schema.exclude(path=list(EXCLUDED_PATHS))


@pytest.fixture(scope="module")
def token(served: Server) -> str:
    return served.token("schemathesis")


def operations(api_schema: Any) -> list[Any]:
    return [result.ok() for result in api_schema.get_all_operations()]


def test_schema_covers_the_rest_api(api_schema: Any) -> None:
    paths = {op.path for op in operations(api_schema)}
    assert {"/api/tasks", "/api/tasks/{task_id}", "/api/profile", "/chatkit", "/api/{user_id}/chat"} <= paths


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_rest_api_keeps_its_openapi_contract(api_schema: Any, served: Server, token: str, mode: Any) -> None:
    """Every operation, with schemathesis' generated valid (positive) and invalid (negative) input.
    (Driven by hand: schemathesis' pytest plugin does not run under pytest 9.)"""
    calls: dict[str, int] = {}
    failures: list[str] = []
    for operation in operations(api_schema):
        label = operation.label

        @settings(PROFILE, max_examples=EXAMPLES * SCALE)
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            response = case.call_and_validate(
                headers={"Authorization": f"Bearer {token}"}, excluded_checks=EXCLUDED_CHECKS, timeout=10
            )
            calls[label] = calls.get(label, 0) + 1  # noqa: B023 - run before the loop moves on
            unavailable = response.status_code == 503 and response.json().get("error") == "chat_unavailable"
            assert response.status_code < 500 or unavailable, (response.status_code, response.text[:300])

        try:
            check()
        except Unsatisfiable:
            continue  # nothing to make invalid: the operation takes no input
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{label}: {type(exc).__name__}: {exc}"[:3000])
    record(
        f"test_openapi_schemathesis::{mode.value}",
        operations=len(calls),
        inputs=sum(calls.values()),
        failures=len(failures),
    )
    assert not failures, "\n\n".join(failures)
