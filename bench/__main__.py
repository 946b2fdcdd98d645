"""`python -m bench [--quick] [--only mcp,search,...] [--profile]`: run the benchmarks, write JSON
(bench/results/latest.json) and print a table of the targets. See bench/README.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import procs
from bench.core import Section, configure_logging

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (module, title); the order they run in.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "mcp": ("bench.mcp_latency", "1. MCP tool latency (HTTP+MCP vs direct)"),
    "search": ("bench.search", "2. Search at scale (SQLite, PostgreSQL vs raw driver)"),
    "dapr": ("bench.dapr_search", "2. Search in Dapr-state mode (10k/100k tasks, sidecar double)"),
    "chat": ("bench.chat", "3. Chat turn overhead (scripted instant model)"),
    "events": ("bench.events", "4. Event pipeline throughput (embedded)"),
    "events_dapr": ("bench.events_dapr", "4. Event pipeline throughput (Dapr mode, sidecar double)"),
    "reminders": ("bench.reminders", "5. Reminder accuracy (embedded, real clock)"),
    "footprint": ("bench.footprint", "6. Footprint (cold start, RSS, worker imports)"),
    "load": ("bench.load", "7. Load: 50 users, REST+MCP mix"),
}
# In-process benchmarks are profiled in this process; the others in their server process.
IN_PROCESS = {"search", "dapr", "events", "reminders"}


def _git_rev() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=procs.ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=procs.ROOT, capture_output=True, text=True)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        return None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run_one(name: str, quick: bool, work: Path, profile_dir: Path | None) -> Section:
    import importlib

    module, title = BENCHMARKS[name]
    section = Section(name, title)
    t0 = time.perf_counter()
    log(f"[bench] {title} ...")
    spy = None
    try:
        mod = importlib.import_module(module)
        if profile_dir is not None and name in IN_PROCESS:
            from bench.profiling import PySpy

            spy = PySpy(os.getpid(), profile_dir / f"{name}.collapsed").__enter__()
        (work / name).mkdir(parents=True, exist_ok=True)
        await mod.run(section, quick=quick, work=work / name, log=log)
    except Exception as exc:  # one failing benchmark must not hide the others' figures
        section.status = "error"
        section.reason = f"{type(exc).__name__}: {exc}"
        section.info["traceback"] = traceback.format_exc()[-4000:]
        log(f"[bench]   FAILED: {section.reason}")
    finally:
        if spy is not None:
            spy.__exit__(None, None, None)
    section.duration_s = time.perf_counter() - t0
    log(f"[bench]   done in {section.duration_s:.1f}s")
    return section


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "ratio":
        return f"{v:.4f}"
    if abs(v) >= 100:
        return f"{v:,.0f} {unit}"
    return f"{v:.2f} {unit}" if abs(v) < 10 else f"{v:.1f} {unit}"


def table(report: dict[str, Any]) -> str:
    rows = [("#", "target", "measured", "limit", "")]
    for name, sec in report["benchmarks"].items():
        if sec["status"] != "ok":
            rows.append(("", f"{name}: {sec['status']}", (sec.get("reason") or "")[:60], "", "ERR"))
            continue
        for t in sec["targets"]:
            mark = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            rows.append(
                (t["id"], t["label"], _fmt(t["value"], t["unit"]), f"{t['op']} {_fmt(t['limit'], t['unit'])}", mark)
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    extra = report.get("key_figures") or []
    if extra:
        lines += ["", "key figures (medians of runs):"] + [f"  {k}: {v}" for k, v in extra]
    return "\n".join(lines)


def key_figures(report: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    b = report["benchmarks"]

    def fig(sec: str, name: str) -> dict[str, Any] | None:
        return b.get(sec, {}).get("figures", {}).get(name)

    for op in ("add_task", "list_tasks", "complete_task"):
        h, d = fig("mcp", f"{op}.http_mcp"), fig("mcp", f"{op}.direct")
        raw = fig("mcp", f"{op}.http_jsonrpc_server_share")
        floor = fig("mcp", f"{op}.sdk_floor")
        if h and d:
            share = f"; server share (bare JSON-RPC) p50 {raw['p50']:.1f} / p95 {raw['p95']:.1f} ms" if raw else ""
            sdk = f"; SDK floor (a server that only answers) p50 {floor['p50']:.1f} ms" if floor else ""
            out.append(
                (
                    f"mcp {op}",
                    f"SDK client p50 {h['p50']:.1f} / p95 {h['p95']:.1f} ms{share}{sdk}; "
                    f"direct p50 {d['p50']:.1f} / p95 {d['p95']:.1f} ms",
                )
            )
    for store in ("sqlite", "postgres"):
        s, r = fig("search", f"{store}.service"), fig("search", f"{store}.raw_driver")
        if s and r:
            out.append(
                (
                    f"search {store}",
                    f"service p50 {s['p50']:.1f} / p95 {s['p95']:.1f} ms; raw p50 {r['p50']:.1f} / p95 {r['p95']:.1f} ms",
                )
            )
    for size in ("10k", "100k"):
        if d := fig("dapr", f"dapr.{size}.service"):
            cold = fig("dapr", f"dapr.{size}.service_cold_cache") or {}
            wrote = fig("dapr", f"dapr.{size}.service_after_own_write") or {}
            old = fig("dapr", f"dapr.{size}.before_every_bucket") or {}
            out.append(
                (
                    f"search dapr {size}",
                    f"p50 {d['p50']:.0f} / p95 {d['p95']:.0f} ms (cold cache p50 {cold.get('p50', 0):.0f} / "
                    f"p95 {cold.get('p95', 0):.0f}; after a write p95 {wrote.get('p95', 0):.0f}; before the "
                    f"projection p50 {old.get('p50', 0):.0f} / p95 {old.get('p95', 0):.0f} ms)",
                )
            )
    if c := fig("chat", "turn.total"):
        t = fig("chat", "turn.ttfb") or {}
        out.append(
            ("chat turn", f"end p50 {c['p50']:.0f} / p95 {c['p95']:.0f} ms; first byte p50 {t.get('p50', 0):.0f} ms")
        )
    if e := fig("events", "throughput"):
        out.append(("events", f"{e['events_per_s']:.0f} events/s"))
    if r := fig("reminders", "lateness"):
        out.append(("reminders", f"lateness p50 {r['p50'] * 1000:.0f} ms / p99 {r['p99'] * 1000:.0f} ms"))
    if r := fig("reminders", "burst_lateness"):
        out.append(("reminders burst", f"lateness p50 {r['p50'] * 1000:.0f} ms / p99 {r['p99'] * 1000:.0f} ms"))
    if lo := fig("load", "overall"):
        out.append(
            ("load", f"{lo['rps']:.0f} req/s, p50 {lo['p50']:.0f} / p95 {lo['p95']:.0f} ms, errors {lo['errors']:.0f}")
        )
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    configure_logging(str(RESULTS / "bench-app.log"))
    profile_dir = RESULTS / "profiles" if args.profile else None
    procs.PROFILE_DIR = profile_dir
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    sections: dict[str, Section] = {}
    with tempfile.TemporaryDirectory(prefix="doable-bench-") as tmp:
        for name in names:
            sections[name] = await run_one(name, args.quick, Path(tmp), profile_dir)
            # What is done so far, in case a later benchmark hangs or the run is cut short.
            partial = {n: s.to_json() for n, s in sections.items()}
            (RESULTS / "partial.json").write_text(json.dumps({"benchmarks": partial}, indent=1))
    report: dict[str, Any] = {
        "schema": "doable-bench/1",
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(),
        "duration_s": round(time.perf_counter() - t0, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "git": _git_rev(),
        "command": " ".join(["python -m bench", *sys.argv[1:]]),
        "benchmarks": {n: s.to_json() for n, s in sections.items()},
    }
    report["targets"] = [{"benchmark": n, **t} for n, s in report["benchmarks"].items() for t in s["targets"]]
    report["summary"] = {
        "met": sum(1 for t in report["targets"] if t["met"] is True),
        "missed": sum(1 for t in report["targets"] if t["met"] is False),
        "errors": [n for n, s in report["benchmarks"].items() if s["status"] == "error"],
    }
    report["key_figures"] = key_figures(report)
    return report


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller data and fewer/shorter runs (a smoke run)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    p.add_argument("--profile", action="store_true", help="py-spy collapsed stacks into bench/results/profiles/")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="where to write the JSON")
    p.add_argument("--table", type=Path, metavar="JSON", help="only print the table of an existing report")
    args = p.parse_args()
    if args.table is not None:
        report = json.loads(args.table.read_text())
        report["key_figures"] = key_figures(report)
        print(table(report))
        return
    report = asyncio.run(main_async(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(
        f"\nDoable benchmarks ({report['mode']}, {report['duration_s']}s, load avg before {report['machine']['loadavg_before'][0]}) -> {args.out}\n"
    )
    print(table(report))
    s = report["summary"]
    print(
        f"\n{s['met']} targets met, {s['missed']} missed"
        + (f", errors in: {', '.join(s['errors'])}" if s["errors"] else "")
    )
    sys.exit(1 if s["errors"] else 0)


if __name__ == "__main__":
    main()
