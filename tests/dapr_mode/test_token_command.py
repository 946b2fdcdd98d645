"""`doable token` in Dapr mode signs with the key the API verifies with: the jwt-secret of the
Dapr secret store, read through the sidecar (as `kubectl exec deploy/doable-api -c api -- doable
token --user NAME` runs it in the cluster, where the pod has no DOABLE_JWT_SECRET)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx2
import pytest
from fastapi import FastAPI

from doable.cli import main
from tests.conftest import auth
from tests.dapr_mode.conftest import DAPR_TOKEN


def _pod_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, sidecar: str) -> None:
    """The api container's environment: the ConfigMap's settings, the injector's sidecar address
    and the chart's DAPR_API_TOKEN, and no signing key of its own."""
    for name in ("DOABLE_JWT_SECRET", "DOABLE_JWT_JWKS_URL", "DAPR_HTTP_PORT", "DOABLE_DAPR_HTTP_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOABLE_RUNTIME", "dapr")
    monkeypatch.setenv("DOABLE_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DAPR_HTTP_ENDPOINT", sidecar)
    monkeypatch.setenv("DAPR_API_TOKEN", DAPR_TOKEN)
    monkeypatch.setenv("DOABLE_DAPR_STARTUP_TIMEOUT", "3")


async def _doable_token(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    # The command runs its own event loop (asyncio.run), as it does from a shell.
    await asyncio.to_thread(main, ["token", *argv])
    return capsys.readouterr().out.strip()


async def test_a_token_minted_in_dapr_mode_is_accepted_by_the_api(
    app: FastAPI,
    sidecar_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _pod_env(monkeypatch, tmp_path / "pod-data", sidecar_url)
    token = await _doable_token(capsys, "--user", "alice", "--ttl", "15m")
    assert token.count(".") == 2, token
    # Signed with the secret store's key, not with one generated into the data dir.
    assert not (tmp_path / "pod-data" / "jwt-secret").exists()
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1:8000") as http:
        accepted = await http.get("/api/tasks", headers=auth(token))
        assert accepted.status_code == 200, accepted.text
        # What the command used to do in the pod: sign with a key generated in the data dir.
        monkeypatch.setenv("DOABLE_RUNTIME", "embedded")
        local = await _doable_token(capsys, "--user", "alice")
        refused = await http.get("/api/tasks", headers=auth(local))
        assert refused.status_code == 401


async def test_the_command_says_when_the_sidecar_is_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _pod_env(monkeypatch, tmp_path / "pod-data", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("DOABLE_DAPR_STARTUP_TIMEOUT", "0.5")
    with pytest.raises(SystemExit) as exc:
        await _doable_token(capsys, "--user", "alice")
    assert "sidecar" in str(exc.value.code)
    assert capsys.readouterr().out == ""
