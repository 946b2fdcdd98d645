"""Profiles for the misses: py-spy on a server process (collapsed stacks), pyinstrument in-process,
and a small summary of collapsed stacks (inclusive share per function) for bench/README.md."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy_path() -> str | None:
    exe = Path(sys.executable).with_name("py-spy")
    return str(exe) if exe.exists() else shutil.which("py-spy")


class PySpy:
    """`py-spy record` attached to a process for the duration of a `with` block (collapsed stacks)."""

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        self.pid = pid
        self.out = out
        self.rate = rate
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        exe = py_spy_path()
        if exe is None:
            return self
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "-o",
                str(self.out),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()


def summarize_collapsed(path: Path, top: int = 25, contains: str | None = None) -> list[tuple[float, str]]:
    """(inclusive share, frame) for the most-present frames of a collapsed-stack file."""
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            name = (
                frame.split(" (")[0] + " (" + frame.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
                if " (" in frame
                else frame
            )
            if name not in seen:
                seen.add(name)
                inclusive[name] += n
    rows = [(n / total, f) for f, n in inclusive.most_common() if contains is None or contains in f]
    return rows[:top]


if __name__ == "__main__":  # python -m bench.profiling FILE [FILTER]
    for share, frame in summarize_collapsed(
        Path(sys.argv[1]), int(sys.argv[3]) if len(sys.argv) > 3 else 40, sys.argv[2] if len(sys.argv) > 2 else None
    ):
        print(f"{share * 100:5.1f}%  {frame}")
