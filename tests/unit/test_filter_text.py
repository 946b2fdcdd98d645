"""The compact text filter: parsing, the canonical echo, and errors a model can act on."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from doable.domain import filter_text as ft
from doable.domain.clock import LocalCalendar
from doable.domain.errors import InvalidArgument
from doable.domain.query import Status, TaskFilter
from doable.domain.task import Priority

CAL = LocalCalendar(now=datetime(2026, 11, 26, 12, tzinfo=UTC), tz=ZoneInfo("Europe/Berlin"))  # a Thursday


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("overdue & (#work | #home) & p:high", "overdue & (#work | #home) & p:high"),
        ("#Work #home", "#work & #home"),
        ("#work or #home and not done", "#work | (#home & !done)"),
        ('"Quarterly Report"', '"quarterly report"'),
        ("due before: friday", "due before: 2026-11-27"),
        ("due after: 2026-12-01 & no_due", "due after: 2026-12-01 & no_due"),
        ("!(today | tomorrow)", "!(today | tomorrow)"),
        ("completed | open", "done | pending"),
    ],
)
def test_parses_and_echoes_a_canonical_form(text: str, canonical: str) -> None:
    assert ft.render(ft.parse(text, CAL)) == canonical


def test_weekday_dates_are_the_next_one_in_the_users_calendar() -> None:
    assert ft._day("thursday", CAL) == date(2026, 12, 3)  # today is Thursday: the next one
    assert ft._day("monday", CAL) == date(2026, 11, 30)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("(#a", "unclosed"),
        ("p:urgent", "none, low, medium, high"),
        ("due before: someday", "YYYY-MM-DD"),
        ("& #a", "unexpected '&'"),
        ("bananas", "does not know 'bananas'"),
        ("", "empty"),
        ("#a " * 31, "at most 30"),
    ],
)
def test_errors_say_what_is_accepted(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as err:
        ft.parse(text, CAL)
    assert err.value.field == "filter"


def test_describe_renders_structured_filters_in_the_same_language() -> None:
    flt = TaskFilter(
        status=Status.PENDING,
        priorities=frozenset({Priority.HIGH, Priority.LOW}),
        tags_any=("work",),
        keyword="milk",
        expr=ft.parse("today | overdue", CAL),
    )
    assert ft.describe(flt, "due", False) == 'pending & (p:high | p:low) & #work & "milk" & (today | overdue); sort: due asc'
