"""The query a list request becomes, with its relative dates ("today", "this_week", "friday")
resolved in the user's calendar."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from doable.domain import filter_text
from doable.domain.clock import LocalCalendar
from doable.domain.due import is_date_only, parse_due, parse_instant
from doable.domain.errors import InvalidArgument
from doable.domain.query import (
    DEFAULT_DESCENDING,
    KEYWORD_MAX,
    Overdue,
    TaskFilter,
    TaskQuery,
    check_limit,
    day_bounds,
    decode_cursor,
)
from doable.domain.task import normalize_tags, parse_priority
from doable.usecases.inputs import DueWindow, ListRequest


def build_query(req: ListRequest, cal: LocalCalendar) -> TaskQuery:
    tz = cal.tz
    due_from = parse_instant(req.due_after, tz, "due_after") if req.due_after else None
    due_to = parse_instant(req.due_before, tz, "due_before") if req.due_before else None
    if req.due_after and is_date_only(req.due_after):
        due_from = parse_due(req.due_after, tz, "due_after")[0]
    if req.due_before and is_date_only(req.due_before):
        # "before 2026-12-01" means before that day starts.
        due_to = parse_due(req.due_before, tz, "due_before")[0]
    has_due: bool | None = None
    overdue: Overdue | None = None
    if req.due == "overdue":
        overdue = Overdue(now=cal.now, today=cal.today)
    elif req.due == "none":
        has_due = False
    elif req.due == "any":
        has_due = True
    elif req.due is not None:
        due_from, due_to = _narrow(due_from, due_to, _window(req.due, cal))
    keyword = _keyword(req.search)
    tags = normalize_tags(req.tags) if req.tags else ()
    expr = filter_text.parse(req.filter, cal) if req.filter and req.filter.strip() else None
    flt = TaskFilter(
        expr=expr,
        status=req.status,
        priorities=frozenset(parse_priority(p) for p in req.priority or ()),
        tags_any=tags if req.tags_mode == "any" else (),
        tags_all=tags if req.tags_mode == "all" else (),
        due_from=due_from,
        due_to=due_to,
        **day_bounds(due_from, due_to, tz),
        has_due=has_due,
        overdue=overdue,
        keyword=keyword,
    )
    descending = DEFAULT_DESCENDING[req.sort] if req.order is None else req.order == "desc"
    query = TaskQuery(filter=flt, sort=req.sort, descending=descending, limit=check_limit(req.limit))
    if req.cursor:
        query = replace(query, after=decode_cursor(req.cursor, query))
    return query


def _window(due: DueWindow, cal: LocalCalendar) -> tuple[datetime, datetime]:
    """The instants a due window spans in the user's calendar."""
    if due == "today":
        return cal.day_bounds(cal.today)
    if due == "tomorrow":
        return cal.day_bounds(cal.today + timedelta(days=1))
    if due == "this_week":
        return cal.week_bounds()
    start, _ = cal.day_bounds(cal.today)
    return start, cal.day_bounds(cal.today + timedelta(days=6))[1]


def _keyword(search: str | None) -> str | None:
    if search is None:
        return None
    keyword = search.strip().casefold()
    if "\x00" in keyword or len(keyword) > KEYWORD_MAX:
        raise InvalidArgument("search", f"must be at most {KEYWORD_MAX} characters of text")
    return keyword or None


def _narrow(lo: datetime | None, hi: datetime | None, window: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    start = max(lo, window[0]) if lo else window[0]
    end = min(hi, window[1]) if hi else window[1]
    return start, end
