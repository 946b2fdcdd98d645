"""Shared pieces: percentiles, repeated runs and their medians, targets, and the result record."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    if len(ordered) == 1:
        return float(ordered[0])
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def summarize(samples: Sequence[float], qs: Iterable[int] = (50, 95)) -> dict[str, float]:
    """One run's summary: p50/p95 (or the asked quantiles), mean and the sample count."""
    out = {f"p{q}": percentile(samples, q) for q in qs}
    out["mean"] = statistics.fmean(samples) if samples else math.nan
    out["n"] = len(samples)
    return out


class Timer:
    """Collects latencies in milliseconds: `with timer: ...` or `timer.add(seconds)`."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._t0 = 0.0

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.samples.append((time.perf_counter() - self._t0) * 1000.0)

    def add_seconds(self, seconds: float) -> None:
        self.samples.append(seconds * 1000.0)


@dataclass
class Figure:
    """One measured quantity over repeated runs: per-run summaries, and their median."""

    unit: str
    runs: list[dict[str, float]] = field(default_factory=list)
    note: str | None = None

    def add_run(self, summary: dict[str, float]) -> None:
        self.runs.append(summary)

    def median(self, key: str) -> float:
        values = [r[key] for r in self.runs if key in r and not math.isnan(r[key])]
        return float(statistics.median(values)) if values else math.nan

    def to_json(self) -> dict[str, Any]:
        keys = [k for k in (self.runs[0] if self.runs else {}) if k != "n"]
        out: dict[str, Any] = {"unit": self.unit, "runs": len(self.runs)}
        out.update({k: _round(self.median(k)) for k in keys})
        if self.runs and "n" in self.runs[0]:
            out["samples_per_run"] = int(statistics.median(r.get("n", 0) for r in self.runs))
        out["per_run"] = [{k: _round(v) for k, v in r.items()} for r in self.runs]
        if self.note:
            out["note"] = self.note
        return out


def _round(v: float) -> float | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return round(float(v), 4)


@dataclass
class Target:
    id: str  # the item, e.g. "1"
    label: str  # what is compared, e.g. "add_task p95 (HTTP+MCP)"
    value: float | None
    limit: float
    unit: str
    op: str = "<="  # "<=" or ">=" or "=="

    @property
    def met(self) -> bool | None:
        if self.value is None or math.isnan(self.value):
            return None
        if self.op == "<=":
            return self.value <= self.limit
        if self.op == ">=":
            return self.value >= self.limit
        return self.value == self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "value": _round(self.value) if self.value is not None else None,
            "op": self.op,
            "limit": self.limit,
            "unit": self.unit,
            "met": self.met,
        }


@dataclass
class Section:
    """What one benchmark reports: its figures, the targets checked, parameters and notes."""

    name: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | skipped | error
    reason: str | None = None
    duration_s: float = 0.0

    def figure(self, name: str, unit: str = "ms", note: str | None = None) -> Figure:
        if name not in self.figures:
            self.figures[name] = Figure(unit=unit, note=note)
        return self.figures[name]

    def target(self, id: str, label: str, value: float | None, limit: float, unit: str, op: str = "<=") -> Target:
        t = Target(id=id, label=label, value=value, limit=limit, unit=unit, op=op)
        self.targets.append(t)
        return t

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "reason": self.reason,
            "duration_s": round(self.duration_s, 2),
            "params": self.params,
            "figures": {k: v.to_json() for k, v in self.figures.items()},
            "targets": [t.to_json() for t in self.targets],
            "info": self.info,
        }


def ratio_runs(num: Figure, den: Figure, key: str) -> dict[str, float]:
    """Per-run ratios num/den of `key` (both measured in the same run), as a run summary."""
    ratios = [a[key] / b[key] for a, b in zip(num.runs, den.runs, strict=False) if b.get(key)]
    return {"ratio": float(statistics.median(ratios)) if ratios else math.nan, "n": len(ratios)}


def ratio_figure(section: Section, name: str, num: Figure, den: Figure, keys: Sequence[str] = ("p50", "p95")) -> Figure:
    """A figure of per-run ratios (num/den) for each key; its value is the median of those ratios."""
    fig = section.figure(name, unit="x")
    for a, b in zip(num.runs, den.runs, strict=False):
        fig.add_run({k: (a[k] / b[k] if b.get(k) else math.nan) for k in keys})
    return fig


def configure_logging(path: str | None) -> None:
    """Doable's own logging (JSON, info), written to `path` instead of the terminal: the in-process
    (direct) paths then pay the same logging cost as `doable serve`, and the table stays readable."""
    import logging

    from doable.platform import logs
    logs.configure("json", "info")
    if path is not None:
        handler = logging.getLogger().handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(open(path, "a", buffering=1 << 16))
