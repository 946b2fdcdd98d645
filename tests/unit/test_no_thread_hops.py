"""No route of the API or its dependencies is a plain `def`: FastAPI runs those in its thread
pool, a thread hop (and a wait for a free thread under load) per dependency per request, for
what here are attribute reads (profile of the Dapr soak: 6-8 % of the API's samples)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # an included router (FastAPI keeps it whole)
        if included is not None:
            yield from _api_routes(included.routes)


def _is_async(call: Any) -> bool:
    # A callable instance (a dependency class's object) counts by its __call__.
    return inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(type(call).__call__)


def test_every_route_and_dependency_of_the_api_runs_on_the_event_loop(app: FastAPI) -> None:
    routes = list(_api_routes(app.routes))
    assert len(routes) > 20
    sync = sorted(
        {
            f"{route.path}: {getattr(call, '__qualname__', call)}"
            for route in routes
            for call in [route.endpoint, *_calls(route.dependant)]
            if not _is_async(call) and not inspect.isclass(call)
        }
    )
    assert not sync, sync
