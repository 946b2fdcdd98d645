"""Recurrence rules: friendly presets and RFC 5545 RRULEs, evaluated on the user's wall clock.

Rules are stored as a canonical RRULE body without DTSTART (``FREQ=WEEKLY;BYDAY=MO``).
Occurrences are computed on naive local wall-clock times from the series' requested start (its
DTSTART as the user wrote it) and only then turned into instants, so a 09:00 task stays at 09:00
across daylight-saving changes. A wall time that does not exist that day (a spring-forward gap)
is shifted forward by the gap's length, for that day only; an ambiguous one (a fall-back fold)
takes its first occurrence. The series is the ordered set of those instants: never the same
instant twice. All-day series are computed on dates only.

RFC 5545 in full, with one deliberate difference: a monthly rule on the 29th-31st (an explicit
BYMONTHDAY, or a plain FREQ=MONTHLY starting on such a day; no BYDAY/BYSETPOS) is clamped to
the last day of shorter months and keeps its day for the others (Jan 31 -> Feb 28 -> Mar 31).
RFC 5545 skips those months, which silently drops a "pay rent on the 31st" task for five
months a year; nobody who writes "monthly on the 31st" means that.

- DTSTART (the due date) is always the first occurrence and counts toward COUNT, even when
  the rule would not produce it; a series makes exactly COUNT occurrences.
- UNTIL is a date (inclusive of that whole local day), a UTC date-time (``...T235959Z``,
  compared as an instant) or a local date-time.
- The work is bounded: dates are evaluated a year at a time against per-year-type masks, and
  a search gives up when the rule produces nothing within HORIZON_YEARS (validation refuses
  such a rule up front; a series whose next date would lie further away has ended).
"""

# The package's modules, in the order they build on each other: rules (parsing), expander (a
# rule's wall times, a year at a time), series (occurrences as instants, COUNT and UNTIL),
# checks (validation of new input).
from doable.domain.recurrence.checks import check_start, compile_rule, validate_rule
from doable.domain.recurrence.expander import _Expander
from doable.domain.recurrence.rules import (
    FIELD,
    HORIZON_YEARS,
    MAX_COUNT,
    MAX_INTERVAL,
    MAX_PER_DAY,
    PRESET_HELP,
    count_of,
    describe,
    rule_from_parts,
    without_count,
)
from doable.domain.recurrence.series import (
    Occurrence,
    count_through,
    next_after,
    next_occurrence,
    occurrences,
    occurrences_after,
    series_start,
)

__all__ = [
    "FIELD",
    "HORIZON_YEARS",
    "MAX_COUNT",
    "MAX_INTERVAL",
    "MAX_PER_DAY",
    "PRESET_HELP",
    "Occurrence",
    "_Expander",
    "check_start",
    "compile_rule",
    "count_of",
    "count_through",
    "describe",
    "next_after",
    "next_occurrence",
    "occurrences",
    "occurrences_after",
    "rule_from_parts",
    "series_start",
    "validate_rule",
    "without_count",
]
