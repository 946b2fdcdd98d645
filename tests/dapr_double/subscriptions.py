"""Programmatic subscriptions (`GET /dapr/subscribe`) and CEL route matching.

Docs: https://docs.dapr.io/developing-applications/building-blocks/pubsub/subscription-methods/
(programmatic subscriptions, v1 `route` and v2 `routes.rules/default` shapes) and
https://docs.dapr.io/developing-applications/building-blocks/pubsub/howto-route-messages/
(rules are tried in order, a rule without `match` and `routes.default` always match;
an event that matches nothing is dropped). Parsing mirrors daprd's
`GetSubscriptionsHTTP` (dapr/dapr `pkg/runtime/pubsub/subscriptions.go`).

Only a small CEL subset is understood: comparisons `event.<field>[.<field>...] ==/!=
<string|number|bool literal>`, joined by `&&` and `||` (no parentheses). Anything else
is rejected when the subscriptions are loaded, so a test never silently mis-routes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class RouteMatchError(Exception):
    """Evaluating a match expression failed (for example a missing field)."""


@dataclass(frozen=True)
class Comparison:
    path: tuple[str, ...]
    negate: bool
    literal: Any

    def evaluate(self, event: Mapping[str, Any]) -> bool:
        value: Any = event
        for part in self.path:
            if not isinstance(value, Mapping) or part not in value:
                raise RouteMatchError(f"no such key: {part}")
            value = value[part]
        equal = value == self.literal and type(value) is type(self.literal)
        return equal != self.negate


@dataclass(frozen=True)
class MatchExpression:
    source: str
    any_of: tuple[tuple[Comparison, ...], ...]  # disjunction of conjunctions

    def evaluate(self, event: Mapping[str, Any]) -> bool:
        return any(all(c.evaluate(event) for c in conj) for conj in self.any_of)


@dataclass(frozen=True)
class Rule:
    path: str
    match: MatchExpression | None = None


@dataclass(frozen=True)
class Subscription:
    pubsub: str
    topic: str
    rules: tuple[Rule, ...]
    dead_letter_topic: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def raw_payload(self) -> str | None:
        return self.metadata.get("rawPayload")

    def describe(self) -> dict[str, Any]:
        """Shape used by the metadata API (https://docs.dapr.io/reference/api/metadata_api/)."""
        return {
            "type": "PROGRAMMATIC",
            "pubsubname": self.pubsub,
            "topic": self.topic,
            "deadLetterTopic": self.dead_letter_topic,
            "metadata": dict(self.metadata),
            "rules": [{"match": r.match.source if r.match else "", "path": r.path} for r in self.rules],
        }


_COMPARISON = re.compile(r"^\s*event((?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*(==|!=)\s*(.+?)\s*$")


def _unsupported(text: str) -> ValueError:
    return ValueError(f"the sidecar double does not support this CEL expression: {text!r}")


def _literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return json.loads(text)
    raise _unsupported(text)


def compile_match(source: str) -> MatchExpression:
    """Compile the supported CEL subset; raise ValueError for anything else."""
    disjunction: list[tuple[Comparison, ...]] = []
    for alternative in source.split("||"):
        conjunction: list[Comparison] = []
        for term in alternative.split("&&"):
            found = _COMPARISON.match(term)
            if not found:
                raise _unsupported(source)
            path = tuple(found.group(1).lstrip(".").split("."))
            conjunction.append(Comparison(path, found.group(2) == "!=", _literal(found.group(3))))
        disjunction.append(tuple(conjunction))
    return MatchExpression(source, tuple(disjunction))


def _route_path(path: str) -> str:
    return path if path.startswith("/") else f"/{path}"


def parse_subscriptions(payload: Any) -> list[Subscription]:
    """Parse the app's `/dapr/subscribe` answer into subscriptions with ordered rules."""
    if payload is None:
        return []
    if not isinstance(payload, list):
        raise ValueError("/dapr/subscribe must return a JSON array")
    parsed: list[Subscription] = []
    for item in payload:
        routes = item.get("routes") or {}
        rules = [
            Rule(_route_path(r["path"]), compile_match(r["match"]) if (r.get("match") or "").strip() else None)
            for r in routes.get("rules") or []
        ]
        # A default path is a rule with no match, tried last; the v1 `route` is used only without it.
        if routes.get("default"):
            rules.append(Rule(_route_path(routes["default"])))
        elif item.get("route"):
            rules.append(Rule(_route_path(item["route"])))
        if not rules:
            continue  # daprd drops subscriptions with no routes
        parsed.append(
            Subscription(
                pubsub=item["pubsubname"],
                topic=item["topic"],
                rules=tuple(rules),
                dead_letter_topic=item.get("deadLetterTopic") or "",
                metadata={str(k): str(v) for k, v in (item.get("metadata") or {}).items()},
            )
        )
    return parsed


def match_route(rules: Sequence[Rule], event: Mapping[str, Any]) -> str | None:
    """First matching rule's path, or None when no rule matches (the event is then dropped)."""
    for rule in rules:
        if rule.match is None or rule.match.evaluate(event):
            return rule.path
    return None
