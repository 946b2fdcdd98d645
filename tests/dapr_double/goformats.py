"""Value formats daprd inherits from Go: booleans (strconv.ParseBool) and durations (time.ParseDuration)."""

from __future__ import annotations

import re
from datetime import timedelta

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_bool(text: str) -> bool:
    """strconv.ParseBool: raise ValueError for anything but the accepted spellings."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"invalid boolean {text!r}")


def parse_duration(text: str) -> timedelta:
    """time.ParseDuration, e.g. '30s', '1h30m', '1.5h', '500ms'."""
    body = text.strip()
    sign = -1.0 if body.startswith("-") else 1.0
    body = body.lstrip("+-")
    if body == "0":
        return timedelta(0)
    position, seconds = 0, 0.0
    while position < len(body):
        part = _DURATION_PART.match(body, position)
        if part is None:
            raise ValueError(f"invalid duration {text!r}")
        seconds += float(part.group(1)) * _UNITS[part.group(2)]
        position = part.end()
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    return timedelta(seconds=sign * seconds)
