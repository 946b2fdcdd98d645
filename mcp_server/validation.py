"""Argument errors a model can fix in one step: `invalid_argument: scope: must be 'this', 'future'
or 'all' (got 'sometimes')` instead of pydantic's multi-line report with its documentation links,
union branch names and error types."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# Errors that only say "this was not the other kind of value" for a union whose other branch
# was meant (a recurrence object is not a string): dropped when a deeper error explains more.
_WRONG_BRANCH = {"string_type", "dict_type", "model_type", "model_attributes_type", "int_type", "list_type"}


def _is_branch(part: Any) -> bool:
    # pydantic names union branches in `loc` ("RecurrenceIn", "constrained-str", "list[int]"); field
    # names here are snake_case.
    return isinstance(part, str) and (part[:1].isupper() or "-" in part or "[" in part)


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc if not _is_branch(p)).replace(".[", "[")


def explain(exc: ValidationError) -> str:
    """One line per wrong field: the field, the rule (allowed values), and the value given."""
    errors = exc.errors(include_url=False)
    deep = {_field(e["loc"]).split(".")[0] for e in errors if e["type"] not in _WRONG_BRANCH}
    lines: dict[str, None] = {}
    for e in errors:
        field = _field(e["loc"]) or "arguments"
        if e["type"] in _WRONG_BRANCH and field.split(".")[0] in deep:
            continue
        rule = (
            str(e["msg"])
            .replace("Input should be", "must be")
            .replace("Extra inputs are not permitted", "unknown field")
        )
        value = e.get("input")
        got = f" (got {value!r})" if isinstance(value, str | int | float | bool) and len(repr(value)) <= 60 else ""
        lines[f"{field}: {rule}{got}"] = None
    return "invalid_argument: " + "; ".join(lines)
