"""Fixtures of the security suites (the `tried` counter is shared with the reliability suites)."""

from __future__ import annotations

from tests.reliability.conftest import tried

__all__ = ["tried"]
