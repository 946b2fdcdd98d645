"""What `make test` needs on the machine besides Python packages (issue 21), each with its install
line: Python >= 3.11, the PostgreSQL server binaries (unless DOABLE_TEST_PG names a running server)
Chromium for the browser tests (unless DOABLE_SKIP_BROWSER=1, which CI ignores), and Node.js >= 20 with npm
for the tests that run real JavaScript clients and tools (the TypeScript MCP SDK's OAuth flow, an
OpenID provider, the Claude Desktop bundle's packer).

Standard library only: the Makefile runs `python3 tests/prereqs.py` before it installs anything, and
tests/pg_cluster.py checks the same again once pytest knows which tests will run. Either way a missing
prerequisite stops the run with one line that names it and how to install it."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

POSTGRES_ENV = "DOABLE_TEST_PG"
SKIP_BROWSER_ENV = "DOABLE_SKIP_BROWSER"
INSTALL_POSTGRES = "apt-get install postgresql"
INSTALL_CHROMIUM = "apt-get install chromium"
INSTALL_NODE = "apt-get install nodejs npm"
MIN_NODE = 20
MIN_PYTHON = (3, 11)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def chromium_path() -> str:
    """The browser tests' Chromium (tests/console/conftest.py reads the same variable)."""
    return os.environ.get("DOABLE_TEST_CHROMIUM", "/usr/bin/chromium")


def executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_pg_ctl() -> str | None:
    """The installed server's pg_ctl: `DOABLE_PG_CTL`, then pg_config's bindir, PATH, and Debian's
    versioned directories (/usr/lib/postgresql/<major>/bin, not on PATH), newest first."""
    if explicit := os.environ.get("DOABLE_PG_CTL"):
        return explicit if executable(explicit) else None
    candidates: list[str] = []
    try:
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
        candidates.append(os.path.join(bindir, "pg_ctl"))
    except (OSError, subprocess.SubprocessError):
        pass  # no pg_config (it comes with the client libraries' dev package, or the server's)
    if on_path := shutil.which("pg_ctl"):
        candidates.append(on_path)

    def major(path: str) -> int:
        found = re.search(r"/postgresql/(\d+)/bin/", path)
        return int(found.group(1)) if found else 0

    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=major, reverse=True)
    return next((c for c in candidates if executable(c)), None)


def browser_opted_out() -> bool:
    """DOABLE_SKIP_BROWSER=1 deselects the browser tests, except in CI, where they must run."""
    return os.environ.get(SKIP_BROWSER_ENV) == "1" and not in_ci()


def missing_python() -> str | None:
    if sys.version_info >= MIN_PYTHON:
        return None
    found = ".".join(map(str, sys.version_info[:3]))
    return f"Python >= {'.'.join(map(str, MIN_PYTHON))} (this is {found}): apt-get install python3, or make PYTHON=python3.11"


MISSING_POSTGRES = (
    f"the PostgreSQL server binaries (no pg_ctl found): {INSTALL_POSTGRES}, or set {POSTGRES_ENV} to a running server"
)


def missing_postgres() -> str | None:
    if os.environ.get(POSTGRES_ENV) or find_pg_ctl():
        return None
    return MISSING_POSTGRES


def missing_chromium() -> str | None:
    if executable(chromium_path()) or browser_opted_out():
        return None
    opt_out = "" if in_ci() else f", or set {SKIP_BROWSER_ENV}=1 to deselect the browser tests"
    return f"Chromium for the browser tests (no {chromium_path()}): {INSTALL_CHROMIUM}{opt_out}"


def node_major() -> int | None:
    """The major version of the `node` on PATH, or None without one (or without npm beside it)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.match(r"v(\d+)\.", version.strip())
    return int(found.group(1)) if found else None


def missing_node() -> str | None:
    major = node_major()
    if major is not None and major >= MIN_NODE:
        return None
    found = "none" if major is None else f"v{major}"
    return f"Node.js >= {MIN_NODE} with npm for the JavaScript clients' tests (found {found}): {INSTALL_NODE}"


def report(missing: list[str]) -> str:
    return "missing prerequisite: " + "; ".join(missing)


def main() -> int:
    missing = [m for m in (missing_python(), missing_postgres(), missing_chromium(), missing_node()) if m]
    if missing:
        print(report(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
