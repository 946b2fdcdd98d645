"""The crash scenarios in Dapr mode, each process killed with SIGKILL just before its N-th call
to its sidecar (the test's double, on a port):

- `python -m tests.reliability.crash_scenario_dapr SIDECAR_URL USER KILL_AT`: the API process's
  writes (KILL_AT 0: never; prints the number of sidecar calls). Each run uses its own user, so
  runs share one double.
- `python -m tests.reliability.crash_scenario_dapr worker SIDECAR_URL PORT KILL_AT`: the audit
  worker as `doable worker audit` runs it, handling the bulks the double delivers (prints
  `startup_calls=N` once it is wired, `calls=N` when stopped).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from doable.adapters.dapr.client import DaprClient
from doable.bootstrap import Runtime, build
from doable.platform.settings import Settings
from doable.usecases.inputs import NewTask, TaskChanges

DAPR_TOKEN = "dapr-token-" + "c" * 30
APP_TOKEN = "app-token-" + "c" * 30
JWT_SECRET = "crash-dapr-secret-" + "j" * 40
EXPECTED = [("Buy oat milk", True), ("Pay rent", False), ("Call mom", False)]
EVENTS = 7  # one per write below (a replayed write records nothing new)


def settings_for(data_dir: Path, sidecar: str) -> Settings:
    return Settings(
        runtime="dapr",
        data_dir=data_dir,
        dapr_http_endpoint=sidecar,
        dapr_api_token=SecretStr(DAPR_TOKEN),
        jwt_secret=SecretStr(JWT_SECRET),
        dapr_startup_timeout=10.0,
        log_format="console",
        log_level="warning",
    )


async def scenario(runtime: Runtime, user: str) -> None:
    """Writes with idempotency keys, the outbox relayed after each (as the relay loop would)."""
    service = runtime.service
    outbox = runtime.dapr.outbox  # type: ignore[union-attr]
    await service.add(user, NewTask(title="Buy milk", tags=["home"]), idempotency_key="add-1")
    await service.add(user, NewTask(title="Pay rent", priority="high", due="2026-12-01"), idempotency_key="add-2")
    await outbox.drain()
    await service.add(user, NewTask(title="Call mom"), idempotency_key="add-3")
    await service.update(user, 1, TaskChanges(title="Buy oat milk"), idempotency_key="rename-1")
    await service.add(user, NewTask(title="Scratch"), idempotency_key="add-4")
    await outbox.drain()
    await service.complete(user, 1, idempotency_key="done-1")
    await service.delete(user, 4, idempotency_key="delete-4")
    while await outbox.drain():
        pass


def arm(kill_at: int) -> list[int]:
    """Count calls to the sidecar; SIGKILL this process just before call `kill_at` (0: never)."""
    counter = [0]
    original = DaprClient._request

    async def counted(self: DaprClient, *args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        if counter[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, *args, **kwargs)

    DaprClient._request = counted  # type: ignore[method-assign]
    return counter


async def main(sidecar: str, user: str, kill_at: int) -> None:
    runtime = await build(settings_for(Path(os.environ.get("TMPDIR", "/tmp")), sidecar))
    counter = arm(kill_at)
    try:
        await scenario(runtime, user)
    finally:
        await runtime.aclose()
    print(f"calls={counter[0]}", flush=True)


async def worker_main(sidecar: str, port: int, kill_at: int) -> None:
    import uvicorn

    from doable.bootstrap.dapr import worker_transport
    from doable.bootstrap.workers import build_worker_app

    settings = settings_for(Path(os.environ.get("TMPDIR", "/tmp")), sidecar).model_copy(
        update={"app_api_token": SecretStr(APP_TOKEN), "port": port}
    )
    counter = arm(kill_at)
    transport = await worker_transport(settings, "audit")
    print(f"startup_calls={counter[0]}", flush=True)
    app = build_worker_app(settings, "audit", transport)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    # uvicorn re-raises the SIGTERM it stopped on once it is done: say the count then.
    signal.signal(signal.SIGTERM, lambda *_: print(f"calls={counter[0]}", flush=True))
    await uvicorn.Server(config).serve()


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        asyncio.run(worker_main(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
