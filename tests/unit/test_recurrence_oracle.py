"""Doable's series against an independent oracle: python-dateutil's RFC 5545 expansion, read on
the wall clock and turned into instants by zoneinfo, over random rules, zones and starts,
including starts in DST gaps and folds and starts the rule would not produce (DTSTART counts).

The oracle spells out Doable's documented choices, and nothing else:
- DTSTART is the first occurrence, and COUNT counts it (RFC 5545 §3.8.5.3);
- a wall time is an instant by zoneinfo's fold=0: a time in a gap moves forward by the gap's
  length, an ambiguous one is its first occurrence; the series is the ordered set of instants;
- UNTIL as a date includes that whole local day; as a UTC date-time it is compared as an instant;
- the one deviation: monthly on the 29th-31st is clamped to shorter months' last day. The oracle
  adds those last days with a second dateutil rule (BYMONTHDAY=-1 in the months too short).
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil import rrule as du
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from doable.domain import recurrence as rec
from doable.domain.errors import InvalidArgument

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute DST shift
    "America/Santiago",  # DST changes at midnight: days that start at 01:00
    "Asia/Tehran",
    "America/St_Johns",
    "Pacific/Apia",  # skipped 30 December 2011 entirely
]
DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
SHORT = {29: {2}, 30: {2}, 31: {2, 4, 6, 9, 11}}
WANTED = 12


def _transitions(tz: ZoneInfo) -> list[date]:
    """Days in 2010-2032 on which `tz`'s UTC offset changes."""
    found: list[date] = []
    day = date(2010, 1, 1)
    while day < date(2032, 1, 1):
        before = datetime.combine(day, time(0, 0), tz).utcoffset()
        after = datetime.combine(day, time(23, 59), tz).utcoffset()
        if before != after:
            found.append(day)
        day += timedelta(days=1)
    return found


TRANSITIONS = {name: _transitions(ZoneInfo(name)) for name in ZONES if name != "UTC"}


@st.composite
def rules(draw: st.DrawFn) -> str:
    freq = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY", "YEARLY"]))
    parts = [f"FREQ={freq}"]
    interval = draw(st.sampled_from([1, 1, 1, 2, 3, 5]))
    if interval > 1:
        parts.append(f"INTERVAL={interval}")
    numbered = freq in ("MONTHLY", "YEARLY") and draw(st.booleans())
    top = 5 if freq == "MONTHLY" else draw(st.sampled_from([5, 53]))
    if draw(st.integers(0, 2)) == 0:
        days = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3, unique=True))
        if numbered:
            ns = draw(st.lists(st.integers(-top, top).filter(bool), min_size=len(days), max_size=len(days)))
            days = [f"{n}{d}" for n, d in zip(ns, days, strict=True)]
        parts.append("BYDAY=" + ",".join(days))
    if freq != "WEEKLY" and draw(st.integers(0, 3)) == 0:
        mdays = draw(
            st.lists(st.sampled_from([1, 2, 15, 28, 29, 30, 31, -1, -2, -7]), min_size=1, max_size=3, unique=True)
        )
        parts.append("BYMONTHDAY=" + ",".join(map(str, mdays)))
    # (dateutil itself fails on a numbered BYDAY past a month's weeks with BYMONTH.)
    if not (numbered and top > 5) and draw(st.integers(0, 3)) == 0:
        months = draw(st.lists(st.integers(1, 12), min_size=1, max_size=4, unique=True))
        parts.append("BYMONTH=" + ",".join(map(str, months)))
    if freq == "YEARLY" and draw(st.integers(0, 5)) == 0:
        ydays = draw(
            st.lists(st.sampled_from([1, 60, 100, 200, 365, 366, -1, -300]), min_size=1, max_size=2, unique=True)
        )
        parts.append("BYYEARDAY=" + ",".join(map(str, ydays)))
    if freq == "YEARLY" and not numbered and draw(st.integers(0, 5)) == 0:
        # Weeks that can cross a year boundary (1, 52, 53, -1) are left to
        # test_weeks_crossing_a_year_follow_iso_8601: dateutil drops some of their January days
        # (2022-01-01 from week 52 of 2021, though it keeps 2017-01-01 from week 52 of 2016).
        weeks = draw(st.lists(st.sampled_from([2, 20, -2]), min_size=1, max_size=2, unique=True))
        parts.append("BYWEEKNO=" + ",".join(map(str, weeks)))
    if draw(st.integers(0, 3)) == 0:
        hours = draw(st.lists(st.sampled_from([0, 1, 2, 3, 9, 23]), min_size=1, max_size=3, unique=True))
        parts.append("BYHOUR=" + ",".join(map(str, sorted(hours))))
        if draw(st.booleans()):
            parts.append("BYMINUTE=" + draw(st.sampled_from(["0", "30", "0,30", "15,45"])))
    if freq != "WEEKLY" and len(parts) > 1 + (interval > 1) and draw(st.integers(0, 3)) == 0:
        parts.append("BYSETPOS=" + draw(st.sampled_from(["1", "-1", "2", "1,-1", "3"])))
    if draw(st.integers(0, 4)) == 0:
        parts.append("WKST=" + draw(st.sampled_from(DAYS)))
    end = draw(st.integers(0, 3))
    if end == 1:
        parts.append(f"COUNT={draw(st.integers(1, 8))}")
    return ";".join(parts)


@st.composite
def starts(draw: st.DrawFn) -> tuple[str, datetime]:
    """A zone and a wall-clock start: any day, or one near a DST change (in the gap, in the fold)."""
    name = draw(st.sampled_from(ZONES))
    if name != "UTC" and draw(st.booleans()):
        day = draw(st.sampled_from(TRANSITIONS[name])) - timedelta(days=draw(st.sampled_from([0, 0, 0, 1, 7])))
        hour = draw(st.sampled_from([0, 1, 2, 3]))
    else:
        day = draw(st.dates(date(2015, 1, 1), date(2035, 12, 31)))
        hour = draw(st.integers(0, 23))
    minute = draw(st.sampled_from([0, 15, 30, 45]))
    return name, datetime.combine(day, time(hour, minute))


def _parts(rule: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in rule.split(";"))


def _oracle_walls(rule: str, first: datetime, until: datetime) -> list[datetime]:
    """dateutil's wall-clock times of the endless rule from `first`, up to `until`, plus the
    clamped month ends Doable adds on purpose."""
    parts = _parts(rule)
    endless = ";".join(f"{k}={v}" for k, v in parts.items() if k not in ("COUNT", "UNTIL"))
    found = rruleset = du.rruleset()
    rruleset.rrule(du.rrulestr(endless, dtstart=first))  # type: ignore[arg-type]
    clamped = parts["FREQ"] == "MONTHLY" and not any(
        k in parts for k in ("BYSETPOS", "BYDAY", "BYYEARDAY", "BYWEEKNO", "BYHOUR", "BYMINUTE")
    )
    mdays = [int(d) for d in parts["BYMONTHDAY"].split(",")] if "BYMONTHDAY" in parts else [first.day]
    if clamped:
        allowed = {int(m) for m in parts["BYMONTH"].split(",")} if "BYMONTH" in parts else set(range(1, 13))
        for d in mdays:
            short = SHORT.get(d, set()) & allowed
            if short:
                extra = {
                    "FREQ": "MONTHLY",
                    "INTERVAL": parts.get("INTERVAL", "1"),
                    "BYMONTH": ",".join(map(str, sorted(short))),
                    "BYMONTHDAY": "-1",
                }
                rruleset.rrule(du.rrulestr(";".join(f"{k}={v}" for k, v in extra.items()), dtstart=first))  # type: ignore[arg-type]
    return list(itertools.takewhile(lambda w: w <= until, itertools.islice(found, 4000)))


def oracle(rule: str, first: datetime, tz: ZoneInfo, horizon: datetime) -> list[datetime]:
    parts = _parts(rule)
    walls = _oracle_walls(rule, first, horizon)
    if not walls or walls[0] != first:
        walls.insert(0, first)  # DTSTART always counts
    if "UNTIL" in parts and "T" not in parts["UNTIL"]:
        last_day = datetime.strptime(parts["UNTIL"], "%Y%m%d").date()
        walls = [w for w in walls if w.date() <= last_day]
    instants = sorted({w.replace(tzinfo=tz, fold=0).astimezone(UTC) for w in walls})
    if "UNTIL" in parts and parts["UNTIL"].endswith("Z"):
        bound = datetime.strptime(parts["UNTIL"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        instants = [i for i in instants if i <= bound]
    if "COUNT" in parts:
        instants = instants[: int(parts["COUNT"])]
    return instants


def _accepted(rule: str, start: datetime, first: datetime, tz: ZoneInfo) -> bool:
    try:
        rec.compile_rule(rule)
        rec.check_start(rule, start=start, tz=tz, wall=first)
    except InvalidArgument:
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(rule=rules(), where=starts(), until_kind=st.integers(0, 2), cut=st.integers(0, WANTED - 1))
def test_series_match_dateutil_and_zoneinfo(rule: str, where: tuple[str, datetime], until_kind: int, cut: int) -> None:
    name, first = where
    tz = ZoneInfo(name)
    if "COUNT" not in rule and until_kind == 1:
        rule += f";UNTIL={(first + timedelta(days=40)).strftime('%Y%m%d')}"
    elif "COUNT" not in rule and until_kind == 2:
        rule += f";UNTIL={(first + timedelta(days=40)).strftime('%Y%m%d')}T120000Z"
    start = first.replace(tzinfo=tz, fold=0).astimezone(UTC)  # the due instant (a gap time, moved)
    assume(_accepted(rule, start, first, tz))
    horizon = first + timedelta(days=366 * 12)
    bound = horizon.replace(tzinfo=tz).astimezone(UTC) - timedelta(days=2)
    expected = [i for i in oracle(rule, first, tz, horizon) if i <= bound][:WANTED]
    got = [o.at for o in itertools.islice(rec.occurrences(rule, start=start, tz=tz, wall=first), WANTED)]
    assert [i for i in got if i <= bound] == expected, (rule, name, first)
    # What follows any point: the same series (a preview, a completion and a skip all ask this).
    after = expected[cut] if cut < len(expected) else start
    following = [i for i in expected if i > after][:3]
    nxt = rec.occurrences_after(rule, start=start, after=after, tz=tz, wall=first, limit=3)
    assert nxt[: len(following)] == following, (rule, name, first, after)


@settings(max_examples=60, deadline=None)
@given(week=st.sampled_from([1, 52, 53, -1]), first=st.dates(date(2010, 1, 1), date(2040, 12, 31)))
def test_weeks_crossing_a_year_follow_iso_8601(week: int, first: date) -> None:
    """YEARLY;BYWEEKNO with the default WKST=MO is ISO 8601's week numbering (RFC 5545 §3.3.10):
    every day whose ISO week is `week` (counted from the end for -1), including the days of that
    week that fall in the neighbouring calendar year. `date.isocalendar()` is the oracle."""

    def iso_week(day: date) -> int:
        year, number, _ = day.isocalendar()
        weeks_in_year = date(year, 12, 28).isocalendar()[1]
        return number if week > 0 else number - weeks_in_year - 1

    start = datetime.combine(first, time(9, 0))
    got = [
        o.at.date()
        for o in itertools.islice(
            rec.occurrences(
                f"FREQ=YEARLY;BYWEEKNO={week}", start=start.replace(tzinfo=UTC), tz=ZoneInfo("UTC"), wall=start
            ),
            1,
            1 + 3 * 7,
        )
    ]
    expected = [day for day in (first + timedelta(days=n) for n in range(1, 366 * 30)) if iso_week(day) == week][
        : len(got)
    ]
    assert got == expected
