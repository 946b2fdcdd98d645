"""Starting a real `doable` process for end-to-end tests: a free port, a clean environment,
readiness polling, and a clean shutdown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

DOABLE = [sys.executable, "-m", "doable.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any DOABLE_/OPENAI_ setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOABLE_", "OPENAI_"))}
    env.update({"DOABLE_DATA_DIR": str(data_dir), "DOABLE_LOG_FORMAT": "json", **extra})
    return env


@dataclass
class Served:
    base: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    def token(self, user: str, ttl: str = "10m") -> str:
        """A token minted by the `doable token` command with this server's settings."""
        out = subprocess.run(
            [*DOABLE, "token", "--user", user, "--ttl", ttl], env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()


@contextmanager
def serve_doable(
    data_dir: Path,
    *,
    timeout: float = 30.0,
    command: list[str] = DOABLE,
    cwd: Path | None = None,
    **env: str,
) -> Iterator[Served]:
    """`doable serve` on a free port until the block ends; fails with its output if it never gets
    ready. `command` starts `doable` (this source tree's by default; e.g. uvx from a wheel)."""
    port = free_port()
    environment = clean_env(data_dir, **env)
    proc = subprocess.Popen(
        [*command, "serve", "--port", str(port)],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                output = proc.stdout.read().decode() if proc.stdout else ""
                raise AssertionError(f"doable serve did not become ready:\n{output[-4000:]}")
            try:
                if httpx2.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)  # sync fixture polling a subprocess: no event loop here to block
        yield Served(base, environment, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stdout:
            proc.stdout.close()
