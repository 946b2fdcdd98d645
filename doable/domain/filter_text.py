"""A compact text filter for agents and power users, beside the structured filter.

    overdue & (#work | #home) & p:high
    due before: friday & !done
    "quarterly report" | #finance

Atoms compile to one-condition TaskFilters, so the text filter has exactly the structured
filter's semantics (and every storage adapter evaluates it with the code it already has).
`|`/`or`, `&`/`and` (also implied by a space), `!`/`not`, parentheses. The canonical form
of the parsed expression is echoed back so the caller sees what ran.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

from doable.domain.clock import LocalCalendar, check_year
from doable.domain.errors import InvalidArgument
from doable.domain.query import Overdue, Status, TaskFilter, day_bounds
from doable.domain.task import Priority, Task, normalize_tags

FIELD = "filter"
MAX_LENGTH = 500
MAX_ATOMS = 30
_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
HELP = (
    "use atoms #tag, p:high|medium|low|none, overdue, today, tomorrow, this_week, no_due, has_due, "
    "pending, done, 'due before: DATE', 'due after: DATE', \"keyword\", combined with & | ! and ( )"
)


@dataclass(frozen=True)
class Atom:
    """One condition, in canonical text form; `condition` holds its TaskFilter keyword arguments."""

    text: str
    condition: tuple[tuple[str, object], ...]

    def as_filter(self) -> TaskFilter:
        return TaskFilter(**dict(self.condition))  # type: ignore[arg-type]

    def matches(self, task: Task) -> bool:
        return self.as_filter().matches(task)


@dataclass(frozen=True)
class Not:
    inner: Expr

    def matches(self, task: Task) -> bool:
        return not self.inner.matches(task)


@dataclass(frozen=True)
class All:
    parts: tuple[Expr, ...]

    def matches(self, task: Task) -> bool:
        return all(p.matches(task) for p in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Expr, ...]

    def matches(self, task: Task) -> bool:
        return any(p.matches(task) for p in self.parts)


Expr = Atom | Not | All | Any_


def render(expr: Expr) -> str:
    if isinstance(expr, Atom):
        return expr.text
    if isinstance(expr, Not):
        inner = render(expr.inner)
        return f"!{inner}" if isinstance(expr.inner, Atom) else f"!({inner})"
    sep = " & " if isinstance(expr, All) else " | "
    return sep.join(f"({render(p)})" if isinstance(p, All | Any_) else render(p) for p in expr.parts)


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lp>\() | (?P<rp>\)) | (?P<or>\||\bor\b) | (?P<and>&|\band\b) | (?P<not>!|\bnot\b)
      | (?P<due>due\s+(?:before|after)\s*:\s*[\w-]+)
      | "(?P<quoted>[^"]*)"
      | (?P<word>[^\s()|&!"]+)
    )""",
    re.IGNORECASE | re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise InvalidArgument(FIELD, f"cannot read {text[pos:pos + 20]!r}; {HELP}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], cal: LocalCalendar) -> None:
        self.tokens = tokens
        self.i = 0
        self.cal = cal
        self.atoms = 0

    def peek(self) -> str | None:
        return self.tokens[self.i][0] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Expr:
        expr = self.or_()
        if self.peek() is not None:
            raise InvalidArgument(FIELD, f"unexpected {self.tokens[self.i][1]!r}; {HELP}")
        return expr

    def or_(self) -> Expr:
        parts = [self.and_()]
        while self.peek() == "or":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def and_(self) -> Expr:
        parts = [self.unary()]
        while self.peek() in ("and", "not", "lp", "due", "quoted", "word"):
            if self.peek() == "and":
                self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def unary(self) -> Expr:
        kind = self.peek()
        if kind is None:
            raise InvalidArgument(FIELD, f"ends too early; {HELP}")
        if kind == "not":
            self.take()
            return Not(self.unary())
        if kind == "lp":
            self.take()
            inner = self.or_()
            if self.peek() != "rp":
                raise InvalidArgument(FIELD, "has an unclosed '('")
            self.take()
            return inner
        kind, value = self.take()
        if kind in ("rp", "or", "and"):
            raise InvalidArgument(FIELD, f"unexpected {value!r}; {HELP}")
        self.atoms += 1
        if self.atoms > MAX_ATOMS:
            raise InvalidArgument(FIELD, f"may combine at most {MAX_ATOMS} conditions")
        return self.atom(kind, value)

    def atom(self, kind: str, value: str) -> Atom:
        cal = self.cal
        if kind == "quoted":
            keyword = value.strip().casefold()
            if not keyword:
                raise InvalidArgument(FIELD, 'has an empty "keyword"')
            return Atom(f'"{keyword}"', (("keyword", keyword),))
        if kind == "due":
            m = re.match(r"due\s+(before|after)\s*:\s*([\w-]+)", value, re.IGNORECASE)
            assert m is not None
            which, day = m.group(1).lower(), _day(m.group(2), cal)
            start, _ = cal.day_bounds(day)
            field, day_field = ("due_to", "day_to") if which == "before" else ("due_from", "day_from")
            return Atom(f"due {which}: {day.isoformat()}", ((field, start), (day_field, day)))
        word = value.lower()
        if word.startswith("#"):
            (tag,) = normalize_tags([word]) or ("",)
            return Atom(f"#{tag}", (("tags_any", (tag,)),))
        if word.startswith("p:") or word.startswith("priority:"):
            name = word.split(":", 1)[1]
            try:
                priority = Priority(name)
            except ValueError:
                raise InvalidArgument(FIELD, f"priority must be one of none, low, medium, high (got {name!r})") from None
            return Atom(f"p:{priority.value}", (("priorities", frozenset({priority})),))
        simple: dict[str, tuple[tuple[str, object], ...]] = {
            "overdue": (("overdue", Overdue(now=cal.now, today=cal.today)),),
            "pending": (("status", Status.PENDING),),
            "open": (("status", Status.PENDING),),
            "done": (("status", Status.COMPLETED),),
            "completed": (("status", Status.COMPLETED),),
            "no_due": (("has_due", False),),
            "has_due": (("has_due", True),),
        }
        canonical = {"open": "pending", "completed": "done"}
        if word in simple:
            return Atom(canonical.get(word, word), simple[word])
        windows = {
            "today": cal.day_bounds(cal.today),
            "tomorrow": cal.day_bounds(cal.today + timedelta(days=1)),
            "this_week": cal.week_bounds(),
        }
        if word in windows:
            lo, hi = windows[word]
            days = day_bounds(lo, hi, cal.tz)
            return Atom(word, (("due_from", lo), ("due_to", hi), ("day_from", days["day_from"]), ("day_to", days["day_to"])))
        raise InvalidArgument(FIELD, f"does not know {value!r}; {HELP}")


def _day(text: str, cal: LocalCalendar) -> date:
    word = text.lower()
    if word == "today":
        return cal.today
    if word == "tomorrow":
        return cal.today + timedelta(days=1)
    if word in _WEEKDAYS:
        ahead = (_WEEKDAYS.index(word) - cal.today.weekday()) % 7 or 7
        return cal.today + timedelta(days=ahead)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(FIELD, f"date must be today, tomorrow, a weekday or YYYY-MM-DD (got {text!r})") from None
    check_year(day, FIELD)
    return day


def parse(text: str, cal: LocalCalendar) -> Expr:
    """Parse `text` in the user's calendar (so 'today' and 'friday' are the user's)."""
    if len(text) > MAX_LENGTH or "\x00" in text:
        raise InvalidArgument(FIELD, f"must be at most {MAX_LENGTH} characters of text")
    tokens = _tokens(text)
    if not tokens:
        raise InvalidArgument(FIELD, f"is empty; {HELP}")
    return _Parser(tokens, cal).parse()


def describe(flt: TaskFilter, sort: str, descending: bool) -> str:
    """The whole executed query in this language, structured fields included, plus its sort."""
    parts: list[str] = []
    if flt.status is Status.PENDING:
        parts.append("pending")
    elif flt.status is Status.COMPLETED:
        parts.append("done")
    if flt.priorities:
        ps = [f"p:{p.value}" for p in sorted(flt.priorities, key=lambda p: -p.rank)]
        parts.append(ps[0] if len(ps) == 1 else "(" + " | ".join(ps) + ")")
    if flt.tags_any:
        ts = [f"#{t}" for t in flt.tags_any]
        parts.append(ts[0] if len(ts) == 1 else "(" + " | ".join(ts) + ")")
    parts += [f"#{t}" for t in flt.tags_all]
    if flt.has_due is not None:
        parts.append("has_due" if flt.has_due else "no_due")
    if flt.overdue is not None:
        parts.append("overdue")
    if flt.due_from is not None:
        parts.append(f"due after: {flt.due_from.isoformat()}")
    if flt.due_to is not None:
        parts.append(f"due before: {flt.due_to.isoformat()}")
    if flt.keyword:
        parts.append(f'"{flt.keyword}"')
    if flt.expr is not None:
        text = render(flt.expr)
        parts.append(f"({text})" if isinstance(flt.expr, Any_) else text)
    where = " & ".join(parts) or "all"
    return f"{where}; sort: {sort} {'desc' if descending else 'asc'}"
