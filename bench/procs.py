"""Starting `doable serve` (or the bench's scripted-chat server) as a real process on a free port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil

from doable.platform.auth import mint

ROOT = Path(__file__).resolve().parent.parent
# Set by `python -m bench --profile`: every server process is sampled by py-spy while it runs.
PROFILE_DIR: Path | None = None
JWT_SECRET = "bench-secret-" + "b" * 52


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def token(user_id: str, ttl: int = 3600) -> str:
    """A token `doable serve` accepts (the bench sets DOABLE_JWT_SECRET for it)."""
    return mint(JWT_SECRET, user_id=user_id, issuer="doable", audience="doable", ttl_seconds=ttl)


def serve_env(data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOABLE_", "OPENAI_"))}
    env.update(
        {
            "DOABLE_DATA_DIR": str(data_dir),
            "DOABLE_PORT": str(port),
            "DOABLE_JWT_SECRET": JWT_SECRET,
            "DOABLE_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **extra,
        }
    )
    return env


class Served:
    """A server process: started, waited for (/readyz), measured (RSS), stopped."""

    def __init__(self, args: list[str], data_dir: Path, *, env_extra: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "server.log"
        self._args = args
        self._env = serve_env(data_dir, self.port, **(env_extra or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_after_s: float | None = None
        self._ps: psutil.Process | None = None
        self._spy: Any = None

    def start(self, timeout: float = 60.0) -> Served:
        log = self.log_path.open("ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, *self._args], env=self._env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._ps = psutil.Process(self.proc.pid)
        deadline = t0 + timeout
        with httpx2.Client(timeout=1.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.tail()}")
                try:
                    if client.get(f"{self.base}/readyz").status_code == 200:
                        self.ready_after_s = time.perf_counter() - t0
                        if PROFILE_DIR is not None:
                            from bench.profiling import PySpy

                            name = f"{self.data_dir.parent.name}-{self.data_dir.name}-{self.proc.pid}.collapsed"
                            self._spy = PySpy(self.proc.pid, PROFILE_DIR / name).__enter__()
                        return self
                except httpx2.HTTPError:
                    pass
                time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def rss_mb(self) -> float:
        assert self._ps is not None
        total = self._ps.memory_info().rss
        for child in self._ps.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self._spy is not None:
            self._spy.__exit__(None, None, None)
            self._spy = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def __enter__(self) -> Served:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def doable_serve(data_dir: Path, **env: str) -> Served:
    """The real `doable serve` (embedded SQLite), exactly as users run it."""
    return Served(["-m", "doable.cli", "serve"], data_dir, env_extra=env)


def scripted_chat_serve(data_dir: Path, **env: str) -> Served:
    """`doable serve`'s app with an instant scripted model in place of OpenAI (bench/chat_server.py)."""
    return Served(["-m", "bench.chat_server"], data_dir, env_extra=env)


async def sample_rss(served: Served, stop: asyncio.Event, every: float = 0.05) -> list[float]:
    """RSS samples (MB) of a server until `stop` is set."""
    samples: list[float] = []
    while not stop.is_set():
        try:
            samples.append(served.rss_mb())
        except psutil.Error:
            break
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
    return samples


def auth(tok: str) -> dict[str, Any]:
    return {"Authorization": f"Bearer {tok}"}
