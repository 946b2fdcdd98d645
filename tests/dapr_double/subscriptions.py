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


# The Kafka component's defaults for a bulk subscription that leaves a setting out (or gives 0 or
# less): dapr/components-contrib `common/component/kafka/utils.go` DefaultMaxBulkSubCount and
# DefaultMaxBulkSubAwaitDurationMs, applied with `common/utils` GetIntValOrDefault (val > 0 wins)
# in `pubsub/kafka/kafka.go` BulkSubscribe (v1.16.13, v1.17.8, v1.18.4).
KAFKA_DEFAULT_MAX_MESSAGES = 80
KAFKA_DEFAULT_MAX_AWAIT_MS = 10_000
_INT32 = (-(1 << 31), (1 << 31) - 1)


@dataclass(frozen=True)
class BulkSubscribe:
    """The `bulkSubscribe` object of a `/dapr/subscribe` entry.

    dapr/dapr `pkg/runtime/pubsub/subscriptions.go` BulkSubscribeJSON (v1.16.19-v1.18.3):
    `enabled` (bool), `maxMessagesCount` and `maxAwaitDurationMs` (int32). daprd reads no
    metadata key for it: the Kafka component's bulk settings come only from this object
    (`maxBulkSubCount`-style metadata keys exist for other components, not pubsub.kafka).
    `pkg/runtime/subscription/subscription.go` New takes the bulk path when `enabled` is true.
    """

    enabled: bool = False
    max_messages_count: int = 0
    max_await_duration_ms: int = 0

    @property
    def kafka_max_messages(self) -> int:
        return self.max_messages_count if self.max_messages_count > 0 else KAFKA_DEFAULT_MAX_MESSAGES

    @property
    def kafka_max_await_seconds(self) -> float:
        ms = self.max_await_duration_ms if self.max_await_duration_ms > 0 else KAFKA_DEFAULT_MAX_AWAIT_MS
        return ms / 1000.0

    def describe(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "maxMessagesCount": self.max_messages_count,
            "maxAwaitDurationMs": self.max_await_duration_ms,
        }


def parse_bulk_subscribe(value: Any) -> BulkSubscribe:
    """Decode `bulkSubscribe` as Go's encoding/json does into BulkSubscribeJSON: a wrong type is
    an error that fails the whole `/dapr/subscribe` answer (GetSubscriptionsHTTP deserializeTopicsError)."""
    if value is None:
        return BulkSubscribe()
    if not isinstance(value, Mapping):
        raise ValueError("bulkSubscribe must be a JSON object")
    lowered = {str(k).lower(): v for k, v in value.items()}  # encoding/json matches names case-insensitively
    enabled = lowered.get("enabled", False)
    if enabled is None:
        enabled = False
    if not isinstance(enabled, bool):
        raise ValueError("bulkSubscribe.enabled must be a boolean")
    numbers: list[int] = []
    for name in ("maxmessagescount", "maxawaitdurationms"):
        number = lowered.get(name, 0)
        if number is None:
            number = 0
        if isinstance(number, bool) or not isinstance(number, int) or not _INT32[0] <= number <= _INT32[1]:
            raise ValueError(f"bulkSubscribe.{name} must be an int32")
        numbers.append(number)
    return BulkSubscribe(enabled, numbers[0], numbers[1])


@dataclass(frozen=True)
class Subscription:
    pubsub: str
    topic: str
    rules: tuple[Rule, ...]
    dead_letter_topic: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    bulk: BulkSubscribe = field(default_factory=BulkSubscribe)

    @property
    def bulk_enabled(self) -> bool:
        return self.bulk.enabled

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
                bulk=parse_bulk_subscribe(item.get("bulkSubscribe")),
            )
        )
    return parsed


def match_route(rules: Sequence[Rule], event: Mapping[str, Any]) -> str | None:
    """First matching rule's path, or None when no rule matches (the event is then dropped)."""
    for rule in rules:
        if rule.match is None or rule.match.evaluate(event):
            return rule.path
    return None
