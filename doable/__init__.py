"""Doable: tasks for people and their AI agents. The core: domain, use cases, ports, adapters and wiring."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("doable")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
