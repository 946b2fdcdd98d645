"""Lean tool schemas: the JSON Schemas pydantic generates, without what a model never needs.

Every tool's name, description and input schema go to the model on every turn. pydantic spells
an optional parameter as `anyOf: [X, {type: null}]` with `default: null` and a `title`, and puts
nested models under `$defs`; together that is about a third of the tool list's tokens. Here:
titles and string lengths go, `$ref`s are inlined, and the null branch goes except where an explicit null means
something (update_task: null clears a field). The arguments are still validated by the tool's
own pydantic model, so nothing that was accepted before is refused (or the other way round).
"""

from __future__ import annotations

from typing import Any

# Titles repeat the property names; string lengths are enforced by the tools, whose errors name
# the field and its limit, and the descriptions already say the limits that matter.
_DROP = frozenset({"title", "$defs", "maxLength"})


def compact_schema(schema: dict[str, Any], *, nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A smaller schema that accepts the same arguments; `nullable` top-level properties keep `null`."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, keep_null: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            # Inlined; the referring property describes it (a model's docstring is for the REST docs).
            target = {k: v for k, v in defs[node["$ref"].rsplit("/", 1)[-1]].items() if k != "description"}
            return walk({**target, **{k: v for k, v in node.items() if k != "$ref"}}, keep_null)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP or (key == "default" and value is None):
                continue
            if key == "properties":
                out[key] = {name: walk(prop) for name, prop in value.items()}
            else:
                out[key] = walk(value)
        branches = out.get("anyOf")
        if isinstance(branches, list):
            rest = [b for b in branches if b != {"type": "null"}]
            null = keep_null and len(rest) < len(branches)
            if len(rest) == 1 and isinstance(rest[0].get("type"), str):
                del out["anyOf"]
                out = {**rest[0], **out}
                if null:
                    out["type"] = [out["type"], "null"]
                    if "enum" in out:
                        out["enum"] = [*out["enum"], None]
            else:
                out["anyOf"] = [*rest, {"type": "null"}] if null else rest
        return out

    result: dict[str, Any] = walk(schema)
    for name in nullable & set(result.get("properties", {})):
        original = schema["properties"][name]
        result["properties"][name] = walk(original, keep_null=True)
    return result


def flat_output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same result shape, cheap to validate. A client validates every structured result
    against the tool's output schema, and its validator's cost is one step per (value, subschema)
    pair: a page of 50 tasks described field by field is ~1,000 steps (~15 ms with the official
    client's jsonschema, `$ref` or not). So, flat: `$ref`s inlined; an optional value as
    `type: [X, "null"]` rather than an `anyOf` tried branch by branch; no titles; and an object
    inside a list (a task of a page) keeps its type, its required fields and its field names, each
    field's type being the one the tool's single-object schema gives (get_task's `task`)."""
    defs: dict[str, Any] = schema.get("$defs", {})

    def walk(node: Any, in_list: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            return walk({**target, **{k: v for k, v in node.items() if k != "$ref"}}, in_list)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("title", "$defs"):
                continue
            if key == "properties":
                # `true` accepts anything and costs a validator no step.
                out[key] = {name: True if in_list else walk(prop) for name, prop in value.items()}
            else:
                out[key] = walk(value, in_list=key == "items")
        return _nullable_as_type(out)

    flat: dict[str, Any] = walk(schema)
    return flat


def _nullable_as_type(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` as X with `null` added to its type, when X has a single type
    and nothing that would also constrain null (an enum gains None; a `const` keeps the anyOf)."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return node
    other = branches[0] if branches[1] == {"type": "null"} else branches[1]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or "const" in other:
        return node
    merged = {**other, **{k: v for k, v in node.items() if k != "anyOf"}, "type": [other["type"], "null"]}
    if "enum" in other:
        merged["enum"] = [*other["enum"], None]
    return merged
