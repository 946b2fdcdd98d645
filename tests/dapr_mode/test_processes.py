"""The real commands in Dapr mode, as `dapr run` starts them: `doable serve` and `doable worker
audit`, each a process told only where its sidecar is (DAPR_HTTP_PORT), the tokens, and
DOABLE_RUNTIME=dapr; no database URL, no broker. The double plays both sidecars on real ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2

from doable.platform import topology
from tests.conftest import auth
from tests.dapr_double import DaprDouble
from tests.dapr_mode.conftest import APP_TOKEN, DAPR_TOKEN
from tests.servers import DOABLE, clean_env, free_port


@contextlib.asynccontextmanager
async def doable_process(args: list[str], port: int, log: Path, **env: str) -> AsyncIterator[str]:
    """Run `doable ARGS --port PORT` until the block ends; yields its base URL once /readyz answers 200."""
    base = f"http://127.0.0.1:{port}"
    environment = clean_env(log.parent / "data")
    for name in ("DAPR_HTTP_ENDPOINT", "DAPR_HTTP_PORT", "DAPR_API_TOKEN", "APP_API_TOKEN"):
        environment.pop(name, None)  # the command finds its sidecar from what the test passes, only
    environment.update(env)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *DOABLE, *args, "--port", str(port), env=environment, stdout=out, stderr=out
        )
        try:
            async with httpx2.AsyncClient(timeout=1) as http:
                with anyio.fail_after(30):
                    while True:
                        if proc.returncode is not None:
                            raise AssertionError(f"{args} exited: {(await anyio.Path(log).read_text())[-3000:]}")
                        with contextlib.suppress(httpx2.HTTPError):
                            if (await http.get(f"{base}/readyz")).status_code == 200:
                                break
                        await asyncio.sleep(0.05)
            yield base
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                with anyio.fail_after(10):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_serve_and_a_worker_as_dapr_apps(
    double: DaprDouble, tmp_path: Path, token_for: Callable[..., str]
) -> None:
    env = {
        "DOABLE_RUNTIME": "dapr",
        "DAPR_API_TOKEN": DAPR_TOKEN,
        "APP_API_TOKEN": APP_TOKEN,
        "DOABLE_OUTBOX_POLL_SECONDS": "0.2",
        "DOABLE_DAPR_STARTUP_TIMEOUT": "20",
    }
    api_port, audit_port = free_port(), free_port()
    await double.register_app(topology.API_APP_ID, base_url=f"http://127.0.0.1:{api_port}", load_subscriptions=False)
    await double.register_app("doable-audit", base_url=f"http://127.0.0.1:{audit_port}", load_subscriptions=False)
    async with (
        double.serve(app_id=topology.API_APP_ID) as api_sidecar,
        double.serve(app_id="doable-audit") as audit_sidecar,
    ):
        api_env = {**env, "DAPR_HTTP_PORT": str(urlsplit(api_sidecar).port)}
        audit_env = {**env, "DAPR_HTTP_PORT": str(urlsplit(audit_sidecar).port)}
        async with (
            doable_process(["serve"], api_port, tmp_path / "api.log", **api_env) as api,
            doable_process(["worker", "audit"], audit_port, tmp_path / "audit.log", **audit_env),
        ):
            await double.refresh_subscriptions(topology.API_APP_ID)  # daprd reads them once the app is up
            await double.refresh_subscriptions("doable-audit")
            token = token_for("alice")  # the API verifies it with the jwt-secret from the secret store
            async with httpx2.AsyncClient(base_url=api, headers=auth(token)) as http:
                created = await http.post("/api/tasks", json={"title": "Through two sidecars"})
                assert created.status_code == 201, created.text
                with anyio.fail_after(15):
                    entries: list[dict[str, Any]] = []
                    while not entries:  # the audit worker writes it, in its own process
                        await asyncio.sleep(0.05)
                        entries = (await http.get("/api/history")).json()["entries"]
                [entry] = entries
                assert (entry["event"], entry["title"]) == ("created", "Through two sidecars")
                assert (await http.get("/readyz")).json()["checks"] == {"sidecar": "ok"}
    assert [a.outcome for a in double.deliveries("doable-audit")] == ["success"]
