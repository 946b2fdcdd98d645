"""What the bad-input suites share: hypothesis settings, adversarial values, storage snapshots,
and the figures each suite reports (test-artifacts/reliability.json, read by docs/reliability.md).

Hypothesis runs derandomized (the same inputs every run, so CI is stable) with bounded example
counts; `DOABLE_SOAK=1` multiplies them for a longer local run.
"""

from __future__ import annotations

import base64
import json
import os
import string
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

SOAK = os.environ.get("DOABLE_SOAK") == "1"
SCALE = 10 if SOAK else 1

settings.register_profile(
    "doable-reliability",
    deadline=None,
    # Shrinking a failure of these multi-request tests can take minutes; CI reports the failing
    # input as found (DOABLE_FUZZ_SHRINK=1 shrinks it, for debugging).
    phases=list(Phase) if os.environ.get("DOABLE_FUZZ_SHRINK") == "1" else [p for p in Phase if p is not Phase.shrink],
    derandomize=True,
    database=None,
    print_blob=True,
    # One app and one client serve every example of a test (the storage check is per example).
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("doable-reliability")


def fuzz(examples: int) -> settings:
    """The suites' hypothesis settings with `examples` inputs (x10 under DOABLE_SOAK=1)."""
    return settings(PROFILE, max_examples=examples * SCALE)


# ---- adversarial values ------------------------------------------------------------------------

HUGE = 70_000  # past every field's limit, well under the 1 MiB body limit

NASTY_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\u0000" * 3,
    "\ud800",  # a lone surrogate (JSON can carry it as \ud800)
    "\udfff tail",
    "\u202eevil\u202c",  # right-to-left override
    "\ufeffbom",
    "e\u0301" * 150,  # combining marks
    "👩‍👩‍👧‍👦" * 60,  # ZWJ sequences, astral plane
    "𝕏" * 201,
    "\r\n\t",
    "title\nwith newline",
    "\x1b[31mred\x1b[0m",
    "x" * 201,
    "x" * 4001,
    "y" * HUGE,
    "' OR 1=1 --",
    "%00%ff",
    "../../../etc/passwd",
    "<script>alert(1)</script>",
    "{{7*7}}",
    "${jndi:ldap://127.0.0.1/a}",
    "#work",
    "a,b",
    "null",
    "NaN",
    "\u2028\u2029",
]

NASTY_DATES = [
    "2026-02-30",
    "2026-13-01",
    "2026-00-10",
    "0000-01-01",
    "0001-01-01T00:00",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-23:59",
    "2026-12-01T25:00",
    "2026-12-01T09:60",
    "2026-12-01T09:00+25:00",
    "2026-12-01T09:00:00.99999999Z",
    "2026-03-29T02:30",  # inside a spring-forward gap in Europe
    "2026-10-25T02:30",  # ambiguous at the fall-back
    "+002026-01-01",
    "2026-W01-1",
    "20261201",
    "2026-12-01 09:00",
    "next tuesday",
    "tomorrow at 9",
    "1e10",
    "2026-12-01T09:00Z\x00",
    "",
]

NASTY_TIMEZONES = [
    "Mars/Base",
    "",
    " ",
    "UTC\x00",
    "../../etc/passwd",
    "/etc/localtime",
    "Europe/Berlin/..",
    ".hidden",
    "localtime",
    "posixrules",
    "UTC" * 30,
    "Europe/Berlin ",
    "europe/berlin",
    "GMT+25",
    "Etc/GMT+14",  # valid
    "Asia/Kathmandu",  # valid, +05:45
    "Pacific/Kiritimati",  # valid, +14
]

NASTY_RULES = [
    "FREQ=SECONDLY",
    "FREQ=MINUTELY",
    "FREQ=DAILY;COUNT=0",
    "FREQ=DAILY;COUNT=-1",
    "FREQ=DAILY;COUNT=99999999999999999999",
    "FREQ=DAILY;INTERVAL=0",
    "FREQ=DAILY;INTERVAL=1000",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",  # never matches
    "FREQ=YEARLY;BYMONTH=4;BYMONTHDAY=31",  # never matches
    "FREQ=DAILY;INTERVAL=7;BYDAY=SA",  # never matches unless the due date is a Saturday
    "FREQ=WEEKLY;INTERVAL=2;BYDAY=XX",
    "FREQ=MONTHLY;BYSETPOS=400;BYDAY=MO",
    "FREQ=MONTHLY;BYMONTHDAY=0",
    "FREQ=YEARLY;BYWEEKNO=54",
    "FREQ=YEARLY;BYYEARDAY=367",
    "FREQ=DAILY;UNTIL=19700102",  # ended long before any due date
    "FREQ=DAILY;UNTIL=garbage",
    "FREQ=DAILY;COUNT=3;UNTIL=20300101",
    "FREQ=DAILY;BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=" + ",".join(map(str, range(60))),
    "FREQ=DAILY;BYHOUR=24",
    "FREQ=DAILY;DTSTART=20260101T000000Z",
    "FREQ=DAILY;X-NAME=1",
    "RRULE:FREQ=DAILY;;;",
    "FREQ=DAILY;FREQ=WEEKLY",
    "EXDATE:20261201",
    "every 0 days",
    "every 999 years",
    "every 1000 days",
    "every -1 days",
    "each day",
    "FREQ=DAILY\x00",
    "FREQ=" + "D" * 600,
]

NASTY_INTS = [0, -1, -(2**31), 2**31, 2**53, 2**53 + 1, 2**63 - 1, 2**63, -(2**63) - 1, 2**64 + 7, -(2**70), 10**30]


# The ends of what a date, an int64 column and Python's datetime hold, and just past them.
EDGE_DATES = [
    "9999-12-31",
    "9999-12-31T23:59:59.999999",
    "9999-12-31T23:59:59.999999+00:00",
    "9999-12-31T23:59:59-23:59",
    "9999-12-31T00:00+14:00",
    "9000-12-31",
    "9001-01-01",
    "0001-01-01",
    "0001-01-01T00:00:00",
    "0001-01-01T00:00+14:00",
    "0001-01-01T00:00-23:59",
    "1969-12-31",
    "1970-01-01",
    "1970-01-01T00:00+14:00",
]
EDGE_INTS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**53, 2**53 + 1, 2**64, 10**30, 0, -1]
# Text that str.isdigit() (or int()) takes but is not ASCII digits, and numbers past int64.
LAST_EVENT_IDS = ["٣", "²", "１２", "߁", "9" * 19, "9" * 20, "9" * 32, "-1", "+1", " 1", "1 ", "0x10", "1_0", "", "00001"]


def edge_dates() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(EDGE_DATES), st.dates().map(lambda d: d.isoformat()))


def edge_filters() -> st.SearchStrategy[str]:
    """Filter text whose dates sit at the calendar's ends."""
    dates = st.one_of(st.sampled_from([d[:10] for d in EDGE_DATES]), st.dates().map(lambda d: d.isoformat()))
    return st.builds(lambda which, day: f"due {which}: {day}", st.sampled_from(["before", "after"]), dates)


def forged_cursors() -> st.SearchStrategy[str]:
    """Cursors shaped like ours (base64 of {"v","id","q"}) whose fields hold anything."""
    value = st.one_of(st.sampled_from(EDGE_INTS), ints(), st.text(max_size=5), st.sampled_from(["\ud800", "x" * 2000]), json_values())
    fingerprint = st.one_of(st.text(max_size=12), st.sampled_from(["9c08b3c942c5", "8d90497b7d13", "494b47bde78b"]))
    payload = st.fixed_dictionaries({"v": value, "id": value, "q": fingerprint})
    encode = lambda p: base64.urlsafe_b64encode(json.dumps(p).encode()).decode().rstrip("=")  # noqa: E731
    return payload.map(encode)


def ints() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(NASTY_INTS), st.integers(min_value=-(2**66), max_value=2**66), st.integers(0, 5))


def texts(*, sendable: bool = False) -> st.SearchStrategy[str]:
    """Adversarial strings; `sendable` ones (for URLs and headers) hold no lone surrogates."""
    nasty = [t for t in NASTY_TEXT if not sendable or not any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
    return st.one_of(
        st.sampled_from(nasty),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=190, max_size=230),
    )


def json_values(leaf_texts: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Any]:
    """Any JSON value, biased to the awkward: wrong types, huge numbers, nested junk."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        ints(),
        st.floats(allow_nan=False, allow_infinity=False),
        leaf_texts or texts(),
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=8,
    )


def due_values() -> st.SearchStrategy[Any]:
    valid = st.sampled_from(["2026-12-01", "2026-12-01T09:00", "2026-12-01T09:00:00+01:00", "2027-01-05T08:30Z"])
    return st.one_of(
        valid, st.sampled_from(NASTY_DATES), st.sampled_from(EDGE_DATES), st.datetimes().map(lambda d: d.isoformat()), json_values()
    )


def rule_values() -> st.SearchStrategy[Any]:
    parts = st.lists(
        st.sampled_from(
            [
                "FREQ=DAILY",
                "FREQ=WEEKLY",
                "FREQ=MONTHLY",
                "FREQ=YEARLY",
                "INTERVAL=2",
                "INTERVAL=0",
                "COUNT=2",
                "COUNT=5000",
                "UNTIL=20270101",
                "UNTIL=20000101",
                "BYDAY=MO,WE",
                "BYDAY=SA",
                "BYDAY=1MO",
                "BYDAY=-1FR",
                "BYMONTHDAY=31",
                "BYMONTHDAY=-1",
                "BYMONTH=2",
                "BYSETPOS=-1",
                "BYYEARDAY=366",
                "BYWEEKNO=53",
                "BYHOUR=9,17",
                "BYMINUTE=0,30",
                "WKST=SU",
            ]
        ),
        min_size=1,
        max_size=5,
    ).map(";".join)
    presets = st.sampled_from(["daily", "weekdays", "weekly", "monthly", "yearly", "every 3 days", "every 2 weeks"])
    objects = st.fixed_dictionaries(
        {"rule": st.one_of(presets, parts, st.sampled_from(NASTY_RULES))},
        optional={"count": ints(), "until": st.one_of(st.sampled_from(NASTY_DATES), json_values())},
    )
    return st.one_of(presets, parts, st.sampled_from(NASTY_RULES), objects, json_values())


def reminder_values() -> st.SearchStrategy[Any]:
    one = st.one_of(
        st.fixed_dictionaries({"minutes_before": ints()}),
        st.fixed_dictionaries({"at": due_values()}),
        st.fixed_dictionaries({"at": due_values(), "minutes_before": ints()}),
        st.dictionaries(st.text(max_size=10), json_values(), max_size=3),
    )
    return st.one_of(st.lists(one, max_size=4), st.lists(st.just({"minutes_before": 5}), min_size=11, max_size=12), json_values())


def tag_values() -> st.SearchStrategy[Any]:
    tag = st.one_of(st.sampled_from(["work", "home", "#urgent", "a b", "a,b", "x" * 33, "", "\x00"]), texts())
    return st.one_of(st.lists(tag, max_size=5), st.lists(st.text(string.ascii_lowercase, min_size=1), min_size=21, max_size=30), json_values())


def task_fields(extra: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """A task body (add or update): each field valid, adversarial or a wrong type; maybe extra keys."""
    fields = {
        "title": st.one_of(st.sampled_from(["Buy milk", "Call mom", " Pay rent "]), texts(), json_values()),
        "description": st.one_of(st.sampled_from(["", "details"]), texts(), json_values()),
        "priority": st.one_of(st.sampled_from(["none", "low", "medium", "high", "HIGH", "urgent", ""]), json_values()),
        "tags": st.one_of(st.just(["work"]), tag_values()),
        "due": due_values(),
        "reminders": st.one_of(st.just([{"minutes_before": 15}]), reminder_values()),
        "recurrence": st.one_of(st.sampled_from(["weekly", "daily"]), rule_values()),
    }
    body = st.fixed_dictionaries({}, optional=fields)
    if not extra:
        return body
    extras = st.dictionaries(st.sampled_from(["owner", "user_id", "id", "task_id", "__proto__", "completed", "x" * 50]), json_values(), max_size=2)
    return st.tuples(body, extras).map(lambda pair: {**pair[0], **pair[1]})


# ---- storage snapshots ---------------------------------------------------------------------------

_SKIP_TABLES = ("alembic_version", "sqlite_sequence")


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (SQLite): a 4xx must leave this unchanged."""
    async with engine.connect() as conn:
        names = (
            await conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"))
        ).scalars().all()
        tables: dict[str, list[tuple[Any, ...]]] = {}
        for name in names:
            if name in _SKIP_TABLES or name.startswith("task_search"):
                continue
            rows = (await conn.execute(sa.text(f'SELECT * FROM "{name}"'))).all()
            tables[name] = sorted((tuple(r) for r in rows), key=repr)
    return tables


# ---- reported figures ------------------------------------------------------------------------------


class Tried:
    """Counts the inputs a test sent, by outcome, for the report."""

    def __init__(self) -> None:
        self.by_outcome: dict[str, int] = {}

    def count(self, outcome: int | str) -> None:
        key = f"{outcome // 100}xx" if isinstance(outcome, int) else outcome
        self.by_outcome[key] = self.by_outcome.get(key, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.by_outcome.values())


REPORT = Path(__file__).resolve().parents[2] / "test-artifacts" / "reliability.json"


def record(section: str, **figures: Any) -> None:
    """Set `figures` under `section` in test-artifacts/reliability.json (one section per test)."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    try:
        data: dict[str, dict[str, Any]] = json.loads(REPORT.read_text())
    except (OSError, ValueError):
        data = {}
    data[section] = {**figures, "soak": SOAK}
    REPORT.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
