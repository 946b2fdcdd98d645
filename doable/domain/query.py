"""What a task list asks for: filters, sort, and a stable keyset cursor.

The same semantics are implemented twice: in memory here (`matches`, `sort_key`),
used by the Dapr-state adapter and the fakes, and in SQL by the SQL adapter. The
repository contract tests hold the two together.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, TypedDict
from zoneinfo import ZoneInfo

from doable.domain.clock import start_of_day
from doable.domain.errors import InvalidArgument
from doable.domain.task import Priority, Task

if TYPE_CHECKING:
    from doable.domain.filter_text import Expr

LIMIT_DEFAULT = 50
LIMIT_MAX = 200
KEYWORD_MAX = 200
# Sentinel sort values that put tasks without a due date last in either direction.
# Bounds of a decoded cursor: what a signed 64-bit column holds, the largest task id, and more
# than a casefolded title can be.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
TASK_ID_MAX = 2**53
CURSOR_TEXT_MAX = 1000
_NO_DUE_HIGH = 2**62
_NO_DUE_LOW = -(2**62)


class Status(StrEnum):
    ALL = "all"
    PENDING = "pending"
    COMPLETED = "completed"


class SortField(StrEnum):
    DUE = "due"
    PRIORITY = "priority"
    TITLE = "title"
    CREATED = "created"
    UPDATED = "updated"


DEFAULT_DESCENDING = {
    SortField.DUE: False,
    SortField.PRIORITY: True,
    SortField.TITLE: False,
    SortField.CREATED: True,
    SortField.UPDATED: True,
}


def micros(instant: datetime) -> int:
    """An instant as integer microseconds since the epoch: one comparable form for every store."""
    delta = instant.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def search_text(title: str, description: str) -> str:
    return f"{title}\n{description}".casefold()


@dataclass(frozen=True)
class Overdue:
    """Pending, and past due: timed tasks by instant, all-day tasks by local date."""

    now: datetime
    today: date


@dataclass(frozen=True)
class TaskFilter:
    status: Status = Status.ALL
    priorities: frozenset[Priority] = frozenset()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    due_from: datetime | None = None  # inclusive, on due_at
    due_to: datetime | None = None  # exclusive, on due_at
    # The same bounds as local dates (see `day_bounds`): an all-day task is compared by its date,
    # so it stays "today" after the user changes timezone. Unset: all-day tasks by due_at too.
    day_from: date | None = None  # inclusive, on due_date
    day_to: date | None = None  # exclusive, on due_date
    has_due: bool | None = None
    overdue: Overdue | None = None
    keyword: str | None = None  # already casefolded
    series_id: str | None = None
    # A parsed text filter (doable.domain.filter_text), AND-ed with the fields above.
    expr: Expr | None = None

    def matches(self, task: Task) -> bool:
        if self.expr is not None and not self.expr.matches(task):
            return False
        if self.status is Status.PENDING and task.completed:
            return False
        if self.status is Status.COMPLETED and not task.completed:
            return False
        if self.priorities and task.priority not in self.priorities:
            return False
        if self.tags_any and not set(self.tags_any) & set(task.tags):
            return False
        if self.tags_all and not set(self.tags_all) <= set(task.tags):
            return False
        if self.has_due is not None and (task.due_at is not None) != self.has_due:
            return False
        if self.due_from is not None:
            if task.due_at is None:
                return False
            if task.due_date is not None and self.day_from is not None:
                if task.due_date < self.day_from:
                    return False
            elif task.due_at < self.due_from:
                return False
        if self.due_to is not None:
            if task.due_at is None:
                return False
            if task.due_date is not None and self.day_to is not None:
                if task.due_date >= self.day_to:
                    return False
            elif task.due_at >= self.due_to:
                return False
        if self.overdue is not None:
            if task.completed or task.due_at is None:
                return False
            if task.due_date is not None:
                if not task.due_date < self.overdue.today:
                    return False
            elif not task.due_at < self.overdue.now:
                return False
        if self.keyword and self.keyword not in search_text(task.title, task.description):
            return False
        return not (self.series_id is not None and task.series_id != self.series_id)


def first_day_from(instant: datetime, tz: ZoneInfo) -> date:
    """The first local date (in `tz`) that starts at or after `instant`."""
    day = instant.astimezone(tz).date()
    return day if start_of_day(day, tz) >= instant else day + timedelta(days=1)


class DayBounds(TypedDict):
    day_from: date | None
    day_to: date | None


def day_bounds(due_from: datetime | None, due_to: datetime | None, tz: ZoneInfo) -> DayBounds:
    """`day_from`/`day_to` for instant bounds: the local dates whose start lies within them."""
    return {
        "day_from": first_day_from(due_from, tz) if due_from is not None else None,
        "day_to": first_day_from(due_to, tz) if due_to is not None else None,
    }


SortValue = int | str


@dataclass(frozen=True)
class Position:
    """Where the previous page ended: the last task's sort value and id."""

    value: SortValue
    task_id: int


@dataclass(frozen=True)
class TaskQuery:
    filter: TaskFilter = field(default_factory=TaskFilter)
    sort: SortField = SortField.CREATED
    descending: bool = True
    limit: int = LIMIT_DEFAULT
    after: Position | None = None

    def sort_value(self, task: Task) -> SortValue:
        return sort_value(self.sort, self.descending, task)

    def fingerprint(self) -> str:
        """Identifies the query a cursor belongs to (a cursor from another query is refused)."""
        raw = repr((self.filter, self.sort, self.descending)).encode()
        return hashlib.blake2s(raw, digest_size=6).hexdigest()

    def is_after_position(self, task: Task) -> bool:
        if self.after is None:
            return True
        key = (self.sort_value(task), task.task_id)
        ref = (self.after.value, self.after.task_id)
        return key < ref if self.descending else key > ref

    def apply(self, tasks: list[Task]) -> tuple[list[Task], int]:
        """In-memory evaluation: (the page, the total matching the filter)."""
        matching = [t for t in tasks if self.filter.matches(t)]
        ordered = sorted(matching, key=lambda t: (self.sort_value(t), t.task_id), reverse=self.descending)
        return [t for t in ordered if self.is_after_position(t)][: self.limit], len(matching)


def sort_value(sort: SortField, descending: bool, task: Task) -> SortValue:
    if sort is SortField.DUE:
        if task.due_at is None:
            return _NO_DUE_LOW if descending else _NO_DUE_HIGH
        return micros(task.due_at)
    if sort is SortField.PRIORITY:
        return task.priority.rank
    if sort is SortField.TITLE:
        return task.title.casefold()
    if sort is SortField.CREATED:
        return micros(task.created_at)
    return micros(task.updated_at)


def no_due_sentinel(descending: bool) -> int:
    return _NO_DUE_LOW if descending else _NO_DUE_HIGH


def encode_cursor(query: TaskQuery, last: Task) -> str:
    payload = {"v": query.sort_value(last), "id": last.task_id, "q": query.fingerprint()}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query: TaskQuery) -> Position:
    bad = InvalidArgument("cursor", "is not a cursor returned by this same list query; omit it to start over")
    if len(cursor) > 512:
        raise bad
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        value, task_id, fp = payload["v"], payload["id"], payload["q"]
    except (ValueError, KeyError, TypeError):
        raise bad from None
    # A cursor comes back from the client: every field is checked against what encode_cursor can
    # produce (types, ranges that fit a signed 64-bit column), so a forged one is a 422, never a
    # value the storage cannot bind.
    if fp != query.fingerprint() or not _is_int(task_id) or not 1 <= task_id <= TASK_ID_MAX:
        raise bad
    if query.sort is SortField.TITLE:
        if not isinstance(value, str) or len(value) > CURSOR_TEXT_MAX or "\x00" in value or not _utf8(value):
            raise bad
    elif not _is_int(value) or not INT64_MIN <= value <= INT64_MAX:
        raise bad
    return Position(value=value, task_id=task_id)


def check_int(value: object, field: str, lo: int = 1, hi: int = INT64_MAX) -> int:
    """`value` as an int within lo..hi (by default a positive signed 64-bit id), else an
    InvalidArgument naming `field`: a number the storage cannot bind never reaches it."""
    if not _is_int(value) or not lo <= value <= hi:  # type: ignore[operator]
        raise InvalidArgument(field, f"must be a whole number between {lo} and {hi}")
    return value  # type: ignore[return-value]


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, which JSON can carry
        return False
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TaskPage:
    tasks: list[Task]
    total: int
    next_cursor: str | None
    # The executed query in the text-filter language, echoed so a caller sees what ran.
    query: str | None = None


def check_limit(limit: int | None) -> int:
    if limit is None:
        return LIMIT_DEFAULT
    if not 1 <= limit <= LIMIT_MAX:
        raise InvalidArgument("limit", f"must be between 1 and {LIMIT_MAX}")
    return limit
