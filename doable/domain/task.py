"""The Task entity, its value objects and the rules that keep it valid."""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from doable.domain.errors import InvalidArgument

TITLE_MAX = 200
DESCRIPTION_MAX = 4000
TAGS_MAX = 20
TAG_MAX = 32
REMINDERS_MAX = 10
REMINDER_OFFSET_MAX_MINUTES = 60 * 24 * 366


class Priority(StrEnum):
    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _PRIORITY_RANK[self]


_PRIORITY_RANK = {Priority.NONE: 0, Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3}


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Reminder(_Value):
    """Either an absolute instant or an offset before the task's due time."""

    at: datetime | None = None
    minutes_before: int | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.at is None) == (self.minutes_before is None):
            raise ValueError("a reminder needs exactly one of 'at' or 'minutes_before'")
        return self

    def fire_at(self, due_at: datetime | None) -> datetime | None:
        """When this reminder should fire for a task due at `due_at`."""
        if self.at is not None:
            return self.at
        if due_at is None or self.minutes_before is None:
            return None
        return due_at - timedelta(minutes=self.minutes_before)

    @property
    def key(self) -> str:
        """Stable identity within a task (used for job names and "already sent")."""
        if self.at is not None:
            return "at-" + self.at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"before-{self.minutes_before}m"


class Anchor(StrEnum):
    """Where the next occurrence is counted from when one is completed."""

    SCHEDULE = "schedule"  # the rule's next date after the completed one's due date
    COMPLETION = "completion"  # the rule restarted on the completion day, at the usual time
    SCHEDULE_IF_ON_TIME = "schedule_if_on_time"  # schedule when done by its due time, else completion


class Recurrence(_Value):
    """A canonical RRULE body plus the series' first due instant (its DTSTART)."""

    rule: str
    start: datetime
    anchor: Anchor = Anchor.SCHEDULE
    # Occurrences before `start` that count toward the rule's COUNT (a series re-anchored on
    # completion restarts its rule at each occurrence, and must still end after COUNT of them).
    prior: int = Field(default=0, ge=0)
    # The series' first occurrence as asked for on the user's wall clock (naive): 02:30 on a day
    # when 02:30 does not exist, though `start` is then 03:30, so later days keep 02:30. For an
    # all-day series its date at 00:00. None on series stored before it was kept.
    wall: datetime | None = None


class SeriesValues(_Value):
    """The series' own values of the fields that this one occurrence changed alone (an edit with
    scope "this"): the next occurrence takes these, not the occurrence's."""

    fields: tuple[str, ...] = ()
    title: str | None = None
    description: str | None = None
    priority: Priority | None = None
    tags: tuple[str, ...] | None = None
    due_at: datetime | None = None
    due_date: date | None = None
    reminders: tuple[Reminder, ...] | None = None


class Task(_Value):
    user_id: str
    task_id: int
    title: str
    description: str = ""
    completed: bool = False
    completed_at: datetime | None = None
    priority: Priority = Priority.NONE
    tags: tuple[str, ...] = ()
    due_at: datetime | None = None
    # Set only for all-day tasks: the local calendar day. `due_at` is then that day's start.
    due_date: date | None = None
    reminders: tuple[Reminder, ...] = ()
    recurrence: Recurrence | None = None
    series_id: str | None = None
    series_values: SeriesValues | None = None
    created_at: datetime
    updated_at: datetime
    # Bumped on every write; the storage adapters use it for optimistic concurrency.
    version: int = Field(default=1, ge=1)

    @property
    def all_day(self) -> bool:
        return self.due_date is not None

    @property
    def status(self) -> str:
        return "completed" if self.completed else "pending"

    def series_base(self) -> Task:
        """This occurrence as the series scheduled it (its own one-off changes undone)."""
        if self.series_values is None:
            return self
        sv = self.series_values
        return self.model_copy(update={f: getattr(sv, f) for f in sv.fields} | {"series_values": None})

    def evolve(self, **changes: Any) -> Task:
        """A copy with `changes` applied and the version bumped."""
        return self.model_copy(update={**changes, "version": self.version + 1})

    def to_data(self) -> dict[str, Any]:
        """The JSON-ready shape used in events, state values and tool results."""
        data = self.model_dump(mode="json")
        data["status"] = self.status
        data["all_day"] = self.all_day
        return data


# ---- input rules ---------------------------------------------------------------------------


def _check_text(value: str, field: str, allow_newlines: bool) -> str:
    for ch in value:
        cat = unicodedata.category(ch)
        if ch == "\x00" or (cat == "Cc" and not (allow_newlines and ch in "\n\t\r")):
            raise InvalidArgument(field, "must not contain control characters")
        if cat == "Cs":
            raise InvalidArgument(field, "must be valid unicode text")
    return value


def normalize_title(value: str) -> str:
    title = _check_text(value.strip(), "title", allow_newlines=False)
    if not 1 <= len(title) <= TITLE_MAX:
        raise InvalidArgument("title", f"must be 1-{TITLE_MAX} characters after trimming (got {len(title)})")
    return title


def normalize_description(value: str | None) -> str:
    text = _check_text((value or "").strip(), "description", allow_newlines=True)
    if len(text) > DESCRIPTION_MAX:
        raise InvalidArgument("description", f"must be at most {DESCRIPTION_MAX} characters (got {len(text)})")
    return text


def normalize_tags(values: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Lowercase, trimmed, deduplicated, first-seen order kept."""
    if values is None:
        return ()
    seen: dict[str, None] = {}
    for raw in values:
        if not isinstance(raw, str):
            raise InvalidArgument("tags", "must be a list of strings")
        tag = _check_text(raw.strip(), "tags", allow_newlines=False).lower().lstrip("#")
        if not 1 <= len(tag) <= TAG_MAX:
            raise InvalidArgument("tags", f"each tag must be 1-{TAG_MAX} characters (got {raw!r})")
        if any(ch.isspace() or ch in ",&|()" for ch in tag):
            raise InvalidArgument("tags", f"a tag may not contain spaces or any of , & | ( ) (got {raw!r})")
        seen.setdefault(tag, None)
    if len(seen) > TAGS_MAX:
        raise InvalidArgument("tags", f"at most {TAGS_MAX} tags per task (got {len(seen)})")
    return tuple(seen)


def parse_priority(value: str | None) -> Priority:
    if value is None:
        return Priority.NONE
    try:
        return Priority(str(value).strip().lower())
    except ValueError:
        raise InvalidArgument("priority", "must be one of none, low, medium, high") from None


def validate_reminders(
    reminders: tuple[Reminder, ...], due_at: datetime | None, limit: int = REMINDERS_MAX
) -> tuple[Reminder, ...]:
    if len(reminders) > limit:
        raise InvalidArgument("reminders", f"at most {limit} reminders per task (got {len(reminders)})")
    unique: dict[str, Reminder] = {}
    for r in reminders:
        if r.minutes_before is not None:
            if due_at is None:
                raise InvalidArgument("reminders", "an offset reminder needs a due date; give 'at' instead")
            if not 0 <= r.minutes_before <= REMINDER_OFFSET_MAX_MINUTES:
                raise InvalidArgument(
                    "reminders.minutes_before", f"must be between 0 and {REMINDER_OFFSET_MAX_MINUTES}"
                )
        unique.setdefault(r.key, r)
    return tuple(unique.values())
