"""The suite's PostgreSQL server and its prerequisite checks (tests/conftest.py takes `PG_DSN` from
`suite_dsn()` and re-exports this module's hooks).

- `DOABLE_TEST_PG` set: the suite uses that server as given (it must have pg_trgm available).
- `DOABLE_TEST_PG` unset: the suite starts a throw-away cluster from the installed PostgreSQL server
  binaries (pytest-postgresql's PostgreSQLExecutor: initdb, pg_ctl start/stop) in a temporary
  directory on a free port, creates the database `test` with pg_trgm, and removes it all when the
  session ends. Its DSN is fixed when tests/conftest.py is imported (so `PG_DSN` stays a plain
  module-level string) and exported as `DOABLE_TEST_PG`, so every child process the tests start
  uses the same server; the cluster itself starts once the tests are collected, and only if some
  test is to run.

A missing prerequisite (the PostgreSQL server binaries, or Chromium for the browser tests) stops
the run before its first test with one line that names it and how to install it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import port_for
import pytest

from tests import prereqs
from tests.prereqs import POSTGRES_ENV as ENV
from tests.prereqs import find_pg_ctl

HOST = "127.0.0.1"
SUPERUSER = "postgres"
DBNAME = "test"
# A throw-away cluster: durability buys nothing, and the machine's own cluster runs in UTC.
SERVER_OPTIONS = (
    f"-c listen_addresses={HOST} -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC"
)


# Stops a cluster whose owner died without stopping it (killed by a signal: `timeout`, a CI limit),
# so no server or directory outlives the session; it ends by itself once the directory is gone.
_REAPER = """
import os, shutil, subprocess, sys, time
owner, pg_ctl, datadir, directory = int(sys.argv[1]), *sys.argv[2:]
while os.path.isdir(directory):
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        subprocess.run([pg_ctl, "stop", "-D", datadir, "-m", "immediate"], capture_output=True, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)
        break
    time.sleep(1)
"""


class ThrowAwayCluster:
    """A PostgreSQL cluster of its own in a temporary directory, on a free port, with the database
    `test` (pg_trgm created); `stop()` stops it and removes the directory."""

    def __init__(self, pg_ctl: str | None = None, *, port: int | None = None) -> None:
        self.pg_ctl = pg_ctl
        self.port = port or port_for.select_random()
        self.dsn = f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{DBNAME}"
        self.directory: Path | None = None
        self.executor: Any = None
        self._reaper: subprocess.Popen[bytes] | None = None

    def start(self) -> ThrowAwayCluster:
        # Imported here: the module is imported by every test process, the executor only by the
        # one that starts a cluster.
        from pytest_postgresql.executors import PostgreSQLExecutor

        pg_ctl = self.pg_ctl or find_pg_ctl()
        if pg_ctl is None:
            raise MissingPrerequisite(prereqs.report([prereqs.MISSING_POSTGRES]))
        self.directory = Path(tempfile.mkdtemp(prefix="doable-pg-"))
        try:
            executable = pg_ctl
            if os.geteuid() == 0:
                # initdb and pg_ctl refuse to run as root (a superuser-owned server could be made to
                # run arbitrary code as root), and CI runs as root: run them as an unprivileged
                # user that owns the cluster's directory, through a wrapper the executor calls
                # wherever it would call pg_ctl.
                executable = self._unprivileged_wrapper(pg_ctl)
            self.executor = PostgreSQLExecutor(
                executable=executable,
                host=HOST,
                port=self.port,
                datadir=str(self.directory / "data"),
                unixsocketdir=str(self.directory),
                logfile=str(self.directory / "postgresql.log"),
                startparams="-w",
                dbname=DBNAME,
                user=SUPERUSER,
                postgres_options=SERVER_OPTIONS,
                timeout=120,
            )
            self.executor.start()
            self._reaper = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _REAPER,
                    str(os.getpid()),
                    executable,
                    self.executor.datadir,
                    str(self.directory),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            # The executor returns once the port accepts connections, which the server does while
            # still starting up; `pg_ctl start -w` exits once it is ready to answer.
            if (code := self.executor.process.wait(timeout=120)) != 0:
                raise ClusterFailed(f"pg_ctl start exited with {code}")
            # In a thread of its own, as tests/conftest.py's _pg does: asyncio.run here would leave
            # the main thread's event loop policy marked as set (to no loop), which some tests notice.
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(asyncio.run, self._create_database()).result()
        except BaseException as exc:
            log = self.log_tail()
            self.stop()
            if isinstance(exc, MissingPrerequisite | KeyboardInterrupt):
                raise
            detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            raise ClusterFailed(
                f"could not start a throw-away PostgreSQL cluster with {pg_ctl}: {detail}"
                + (f" (server log: {log})" if log else "")
            ) from exc
        return self

    def _unprivileged_wrapper(self, pg_ctl: str) -> str:
        assert self.directory is not None
        user = next((u for u in (SUPERUSER, "nobody") if _user_exists(u)), None)
        if user is None:
            raise ClusterFailed("running as root with neither a `postgres` nor a `nobody` user to run PostgreSQL as")
        entry = pwd.getpwnam(user)
        os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        wrapper = self.directory / f"pg_ctl-as-{user}"
        # cd first: pg_ctl and initdb fail when they cannot read the working directory.
        wrapper.write_text(f'#!/bin/sh\ncd "{self.directory}" || exit 1\nexec runuser -u {user} -- "{pg_ctl}" "$@"\n')
        wrapper.chmod(stat.S_IRWXU)
        return str(wrapper)

    async def _create_database(self) -> None:
        admin = await asyncpg.connect(host=HOST, port=self.port, user=SUPERUSER, database="postgres")
        try:
            await admin.execute(f"CREATE DATABASE {DBNAME}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        finally:
            await conn.close()

    def log_tail(self) -> str:
        if self.directory is None:
            return ""
        try:
            lines = (self.directory / "postgresql.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-3:])

    def stop(self) -> None:
        """Stop the server and remove its directory; safe to call more than once."""
        executor, self.executor = self.executor, None
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.stop()
        directory, self.directory = self.directory, None
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                reaper.wait(timeout=5)

    def __enter__(self) -> ThrowAwayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class MissingPrerequisite(RuntimeError):
    pass


class ClusterFailed(RuntimeError):
    pass


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# ---- the suite's server ---------------------------------------------------------------------------

_planned: ThrowAwayCluster | None = None


def suite_dsn() -> str:
    """`DOABLE_TEST_PG`, or the DSN of the throw-away cluster this process will start (and export)."""
    global _planned
    if given := os.environ.get(ENV):
        return given
    _planned = ThrowAwayCluster()
    os.environ[ENV] = _planned.dsn
    atexit.register(_planned.stop)
    return _planned.dsn


# ---- the prerequisites, checked once the tests are collected --------------------------------------


def _uses_browser(item: pytest.Item) -> bool:
    return "browser" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before the first test: the prerequisites of the tests that will run (those that -k, -m and
    paths left), then the throw-away cluster if no server was given."""
    if config.option.collectonly or not items:
        return
    missing: list[str] = []
    if any(_uses_browser(item) for item in items):
        if prereqs.browser_opted_out() and not prereqs.executable(prereqs.chromium_path()):
            # Deselected, not skipped: the summary says so, and nothing pretends they ran.
            browser_items = [item for item in items if _uses_browser(item)]
            config.hook.pytest_deselected(items=browser_items)
            items[:] = [item for item in items if not _uses_browser(item)]
        elif chromium := prereqs.missing_chromium():
            missing.append(chromium)
    if _planned is not None and items and _planned.pg_ctl is None:
        # DOABLE_TEST_PG was unset when the session began (this process has set it since, for its children).
        if (pg_ctl := find_pg_ctl()) is None:
            missing.append(prereqs.MISSING_POSTGRES)
        _planned.pg_ctl = pg_ctl
    if missing:
        raise pytest.UsageError(prereqs.report(missing))
    if _planned is not None and items and _planned.executor is None:
        try:
            _planned.start()
        except (MissingPrerequisite, ClusterFailed) as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_unconfigure(config: pytest.Config) -> None:
    if _planned is not None:
        _planned.stop()
