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
