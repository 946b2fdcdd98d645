"""What web routes depend on, as FastAPI dependencies: `service: TaskServiceDep` in a handler's
signature is the task service of the app serving the request.

`create_app` puts one `WebDeps` on the app (built from the parts the composition root handed it);
these aliases are the only readers of it, so a route names exactly what it uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from doable.platform.auth import TokenVerifier
from doable.platform.settings import Settings
from doable.usecases.history import History
from doable.usecases.inbox import Inbox
from doable.usecases.live import LiveHub
from doable.usecases.service import TaskService


@dataclass(frozen=True)
class WebDeps:
    """The parts web routes use, one set per app."""

    settings: Settings
    service: TaskService
    verifier: TokenVerifier
    inbox: Inbox
    history: History
    live: LiveHub
    # The key local sign-in mints with (None: no local sign-in), and whether this process is the
    # whole deployment (local user, local sign-in possible).
    signing_secret: str | None
    standalone: bool


def deps_of(request: Request) -> WebDeps:
    deps: WebDeps = request.app.state.deps
    return deps


# The dependencies are `async def`, though they only read attributes: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request.
async def web_deps(request: Request) -> WebDeps:
    return deps_of(request)


WebDepsDep = Annotated[WebDeps, Depends(web_deps)]


async def _settings(deps: WebDepsDep) -> Settings:
    return deps.settings


async def _service(deps: WebDepsDep) -> TaskService:
    return deps.service


async def _verifier(deps: WebDepsDep) -> TokenVerifier:
    return deps.verifier


async def _inbox(deps: WebDepsDep) -> Inbox:
    return deps.inbox


async def _history(deps: WebDepsDep) -> History:
    return deps.history


async def _live(deps: WebDepsDep) -> LiveHub:
    return deps.live


SettingsDep = Annotated[Settings, Depends(_settings)]
TaskServiceDep = Annotated[TaskService, Depends(_service)]
VerifierDep = Annotated[TokenVerifier, Depends(_verifier)]
InboxDep = Annotated[Inbox, Depends(_inbox)]
HistoryDep = Annotated[History, Depends(_history)]
LiveDep = Annotated[LiveHub, Depends(_live)]
