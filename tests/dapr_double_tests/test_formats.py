"""Pure parsing rules: Go durations, job schedules and times, subscriptions and CEL routing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.dapr_double.goformats import parse_bool, parse_duration
from tests.dapr_double.schedule import parse_schedule, parse_time_or_offset
from tests.dapr_double.subscriptions import RouteMatchError, match_route, parse_subscriptions

T0 = datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5), ("0", 0), ("-2m", -120)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "1d", "", "s"])
def test_invalid_go_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_go_booleans() -> None:
    assert parse_bool("True") and parse_bool("1") and not parse_bool("f")
    with pytest.raises(ValueError):
        parse_bool("yes")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", T0 + timedelta(seconds=30)),
        ("PT1H", T0 + timedelta(hours=1)),
        ("P1M", datetime(2030, 2, 1, tzinfo=UTC)),
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05+02:00", datetime(2030, 1, 2, 1, 4, 5, tzinfo=UTC)),
    ],
)
def test_due_times(text: str, expected: datetime) -> None:
    assert parse_time_or_offset(text, T0) == expected


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("@every 90s", T0 + timedelta(seconds=90)),
        ("0 30 * * * *", T0 + timedelta(minutes=30)),
        ("0 15 3 * * *", T0 + timedelta(hours=3, minutes=15)),
        ("*/10 * * * * *", T0 + timedelta(seconds=10)),
        ("@hourly", T0 + timedelta(hours=1)),
        ("@daily", T0 + timedelta(days=1)),
        ("@weekly", datetime(2030, 1, 6, tzinfo=UTC)),  # next Sunday midnight
        ("0 0 9 * * mon-fri", datetime(2030, 1, 1, 9, tzinfo=UTC)),
        ("0 0 0 1 jan *", datetime(2031, 1, 1, tzinfo=UTC)),
        ("CRON_TZ=Europe/Rome 0 0 9 * * *", datetime(2030, 1, 1, 8, tzinfo=UTC)),
    ],
)
def test_schedules(schedule: str, expected: datetime) -> None:
    assert parse_schedule(schedule).next_after(T0) == expected


@pytest.mark.parametrize("schedule", ["* * * * *", "@every 0s", "@sometimes", "CRON_TZ=Nowhere/Land 0 0 * * * *"])
def test_invalid_schedules(schedule: str) -> None:
    with pytest.raises(ValueError):
        parse_schedule(schedule)


def test_subscription_shapes_and_rule_order() -> None:
    [v1, v2] = parse_subscriptions(
        [
            {"pubsubname": "pubsub", "topic": "a", "route": "events/a"},
            {
                "pubsubname": "pubsub",
                "topic": "b",
                "route": "/ignored",
                "routes": {
                    "rules": [
                        {"match": 'event.type == "x" && event.data.priority == 1', "path": "/urgent-x"},
                        {"match": "event.type == 'x' || event.type != 'y'", "path": "/x-or-not-y"},
                    ],
                    "default": "/rest",
                },
            },
        ]
    )
    assert [r.path for r in v1.rules] == ["/events/a"]
    assert match_route(v2.rules, {"type": "x", "data": {"priority": 1}}) == "/urgent-x"
    assert match_route(v2.rules, {"type": "x", "data": {"priority": 2}}) == "/x-or-not-y"
    assert match_route(v2.rules, {"type": "y", "data": {"priority": 2}}) == "/rest"


def test_rules_without_default_can_match_nothing_and_missing_fields_error() -> None:
    [sub] = parse_subscriptions(
        [{"pubsubname": "p", "topic": "t", "routes": {"rules": [{"match": "event.data.kind == 'a'", "path": "/a"}]}}]
    )
    assert match_route(sub.rules, {"data": {"kind": "b"}}) is None
    with pytest.raises(RouteMatchError):
        match_route(sub.rules, {"data": "not an object"})


def test_unsupported_cel_is_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="does not support"):
        parse_subscriptions(
            [{"pubsubname": "p", "topic": "t", "routes": {"rules": [{"match": "size(event) > 1", "path": "/a"}]}}]
        )
