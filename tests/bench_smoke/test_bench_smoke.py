"""The benchmark harness runs (not a benchmark: `make bench` is). `python -m bench --quick --only mcp`
starts a real `doable serve`, drives it over MCP and writes its JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_mcp_benchmark_writes_its_report(tmp_path: Path) -> None:
    import psutil  # noqa: F401  - the bench extra (installed by `make test`) must be present
    out = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "mcp", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    mcp = report["benchmarks"]["mcp"]
    assert mcp["status"] == "ok"
    figures = {"add_task.http_mcp", "list_tasks.direct", "complete_task.overhead_ratio", "list_tasks.sdk_floor"}
    assert figures <= set(mcp["figures"])
    assert mcp["info"]["add_task_sdk_floor"]["p50_ms"] > 0  # the SDK floor ran, in the same run
    assert all(t["value"] is not None for t in mcp["targets"])
    assert "add_task p95 over HTTP+MCP" in done.stdout
