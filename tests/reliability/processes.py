"""Real `doable serve` processes for the fault, load and log tests: started on a free port with
their (JSON) log going to a file, so a chatty server never blocks on a full pipe; killed with
SIGKILL or stopped with SIGTERM; restarted on the same data."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from tests.servers import DOABLE, clean_env, free_port


@dataclass
class Server:
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) on the same port and data, and wait until /readyz answers 200."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*DOABLE, "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"doable serve did not become ready:\n{self.log()[-4000:]}")
            try:
                if httpx2.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.05)  # polling a subprocess from a sync helper: no event loop to block

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def token(self, user: str, ttl: str = "30m") -> str:
        out = subprocess.run(
            [*DOABLE, "token", "--user", user, "--ttl", ttl], env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def server(tmp: Path, **env: str) -> Server:
    """A server (not started) with its data in `tmp`/data and its log in `tmp`/serve.log."""
    data_dir = tmp / "data"
    return Server(data_dir=data_dir, log_path=tmp / "serve.log", env=clean_env(data_dir, **env))
