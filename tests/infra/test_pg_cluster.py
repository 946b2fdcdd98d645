"""Issue 21: `make test` needs no running database. With DOABLE_TEST_PG unset the suite starts a
throw-away PostgreSQL cluster from the installed server binaries and removes it afterwards; a missing
prerequisite stops the run before its first test with one line that says how to install it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.pg_cluster import ThrowAwayCluster, find_pg_ctl

ROOT = Path(__file__).resolve().parents[2]


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _child_env(**extra: str) -> dict[str, str]:
    """This environment less everything that names a server or a browser opt-out."""
    env = {k: v for k, v in os.environ.items() if k not in {"DOABLE_TEST_PG", "DOABLE_SKIP_BROWSER", "CI"}}
    return env | extra


def _pytest(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_throw_away_cluster_starts_from_the_binaries_answers_and_is_removed() -> None:
    assert find_pg_ctl() is not None
    cluster = ThrowAwayCluster()
    assert not _accepts(cluster.port)  # nothing listens there before: no server is reused
    with cluster:
        directory = cluster.directory
        assert directory is not None and (directory / "data" / "PG_VERSION").is_file()

        async def query() -> tuple[float, str]:
            conn = await asyncpg.connect(cluster.dsn)
            try:
                return await conn.fetchval("SELECT similarity('buy milk', 'buy mlk')"), await conn.fetchval(
                    "SELECT current_setting('data_directory')"
                )
            finally:
                await conn.close()

        similarity, data_directory = asyncio.run(query())
        assert similarity > 0.3  # pg_trgm is there
        assert Path(data_directory) == directory / "data"
    assert not directory.exists()
    assert not _accepts(cluster.port)


@pytest.mark.slow  # a child pytest
def test_the_suite_starts_its_own_cluster_when_no_server_is_given(tmp_path: Path) -> None:
    report = tmp_path / "probe.txt"
    done = _pytest("tests/infra/suite_probe.py", env=_child_env(PROBE_REPORT=str(report)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
    dsn, data_directory = report.read_text().split()
    port = urlsplit(dsn).port
    assert port is not None and port != 5432
    assert not Path(data_directory).exists()  # removed afterwards
    assert not _accepts(port)  # and stopped


@pytest.mark.slow  # a child pytest
def test_missing_server_binaries_stop_the_run_with_one_line() -> None:
    done = _pytest("tests/infra/suite_probe.py", env=_child_env(DOABLE_PG_CTL="/nonexistent/pg_ctl", PROBE_REPORT="-"))
    assert done.returncode == 4, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert (
        "ERROR: missing prerequisite: the PostgreSQL server binaries (no pg_ctl found): apt-get install postgresql"
        in output
    )
    assert "Traceback" not in output and "passed" not in output and "failed" not in output


@pytest.mark.slow  # a child pytest
def test_browser_tests_are_deselected_on_request_but_not_in_ci() -> None:
    browser_tests = "tests/console/test_browser.py"
    missing = {"DOABLE_TEST_CHROMIUM": "/nonexistent/chromium"}

    opted_out = _pytest(browser_tests, env=_child_env(DOABLE_SKIP_BROWSER="1", **missing))
    assert opted_out.returncode == 5, opted_out.stdout + opted_out.stderr  # nothing ran, and it says so
    assert "deselected" in opted_out.stdout and "skipped" not in opted_out.stdout

    ci = _pytest(browser_tests, env=_child_env(CI="true", DOABLE_SKIP_BROWSER="1", **missing))
    assert ci.returncode == 4, ci.stdout + ci.stderr
    assert "ERROR: missing prerequisite: Chromium for the browser tests" in ci.stdout + ci.stderr
    assert "DOABLE_SKIP_BROWSER" not in ci.stdout + ci.stderr


def test_make_test_checks_the_prerequisites_before_it_installs_anything() -> None:
    """`make test` runs tests/prereqs.py with the system Python first: standard library only."""
    env = _child_env(DOABLE_PG_CTL="/nonexistent/pg_ctl", DOABLE_TEST_CHROMIUM="/nonexistent/chromium")
    done = subprocess.run(
        [sys.executable, "-S", "-I", "tests/prereqs.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1  # one line, naming both and how to install them
    assert done.stderr.startswith("missing prerequisite: the PostgreSQL server binaries")
    assert "apt-get install postgresql" in done.stderr
    assert "apt-get install chromium, or set DOABLE_SKIP_BROWSER=1 to deselect the browser tests" in done.stderr

    given = subprocess.run(
        [sys.executable, "-S", "-I", "tests/prereqs.py"],
        cwd=ROOT,
        env=env | {"DOABLE_TEST_PG": "postgresql://postgres@127.0.0.1:5432/test", "DOABLE_SKIP_BROWSER": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (given.returncode, given.stderr) == (0, "")


def test_prerequisites_name_node_when_the_javascript_clients_cannot_run(tmp_path: Path) -> None:
    """The OAuth and bundle tests run real JavaScript tools: without node and npm, one line says so."""
    env = _child_env(PATH=str(tmp_path), DOABLE_TEST_PG="postgresql://postgres@127.0.0.1:5432/test", DOABLE_SKIP_BROWSER="1")
    done = subprocess.run(
        [sys.executable, "-S", "-I", "tests/prereqs.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.startswith("missing prerequisite: Node.js >= 20 with npm")
    assert "apt-get install nodejs npm" in done.stderr


def test_a_cluster_whose_session_is_killed_is_stopped_and_removed() -> None:
    """`timeout`, or CI's time limit, kills pytest without its teardown: the cluster goes all the same."""
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from tests.pg_cluster import ThrowAwayCluster as C; c = C().start(); "
            "print(c.port, c.directory, flush=True); time.sleep(120)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        port, directory = owner.stdout.readline().split()
        assert _accepts(int(port)) and Path(directory).is_dir()
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 60
    while (Path(directory).exists() or _accepts(int(port))) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(directory).exists()
    assert not _accepts(int(port))
