"""Task input rules: what a user typing odd input actually gets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from doable.domain.errors import InvalidArgument
from doable.domain.task import (
    Reminder,
    normalize_description,
    normalize_tags,
    normalize_title,
    parse_priority,
    validate_reminders,
)


def test_title_is_trimmed_and_bounded() -> None:
    assert normalize_title("  Buy milk \t") == "Buy milk"
    assert normalize_title("x" * 200) == "x" * 200
    with pytest.raises(InvalidArgument, match=r"title: must be 1-200 characters after trimming \(got 201\)"):
        normalize_title("x" * 201)
    with pytest.raises(InvalidArgument, match="got 0"):
        normalize_title("    ")


@pytest.mark.parametrize("bad", ["a\x00b", "line\nbreak", "bell\x07"])
def test_title_refuses_control_characters(bad: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        normalize_title(bad)
    assert err.value.field == "title"


def test_description_allows_newlines_but_not_nul_and_is_bounded() -> None:
    assert normalize_description("one\ntwo") == "one\ntwo"
    assert normalize_description(None) == ""
    with pytest.raises(InvalidArgument, match="description"):
        normalize_description("a\x00")
    with pytest.raises(InvalidArgument, match="at most 4000"):
        normalize_description("d" * 4001)


def test_tags_are_lowercased_deduplicated_and_keep_order() -> None:
    assert normalize_tags(["Work", "#home", "work", " Errands "]) == ("work", "home", "errands")


def test_tag_rules_name_the_limit() -> None:
    with pytest.raises(InvalidArgument, match="at most 20 tags"):
        normalize_tags([f"t{i}" for i in range(21)])
    with pytest.raises(InvalidArgument, match="1-32 characters"):
        normalize_tags(["x" * 33])
    with pytest.raises(InvalidArgument, match="spaces"):
        normalize_tags(["two words"])
    # Duplicates do not count twice against the limit.
    assert len(normalize_tags(["a"] * 50)) == 1


def test_priority_accepts_known_levels_only() -> None:
    assert parse_priority("HIGH").value == "high"
    assert parse_priority(None).value == "none"
    with pytest.raises(InvalidArgument, match="none, low, medium, high"):
        parse_priority("urgent")


def test_offset_reminder_needs_a_due_date() -> None:
    due = datetime(2026, 12, 1, 9, tzinfo=UTC)
    r = Reminder(minutes_before=30)
    assert r.fire_at(due) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="needs a due date"):
        validate_reminders((r,), None)


def test_duplicate_reminders_collapse_and_limit_applies() -> None:
    due = datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert len(validate_reminders((Reminder(minutes_before=5), Reminder(minutes_before=5)), due)) == 1
    with pytest.raises(InvalidArgument, match="at most 2 reminders"):
        validate_reminders(tuple(Reminder(minutes_before=i) for i in range(3)), due, limit=2)
