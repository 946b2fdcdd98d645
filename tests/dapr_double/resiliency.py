"""daprd's resiliency engine: timeouts, retries and circuit breakers from Resiliency CRs, per sidecar.

Modelled on dapr/dapr at v1.16.19, v1.17.13 and v1.18.3 (only Go-syntax changes between them):

* `pkg/resiliency/policy.go` NewRunnerWithOptions: the timeout is innermost (each attempt), the
  circuit breaker wraps it (a timed-out attempt is a breaker failure), the retry wraps both. The
  timeout only stops *waiting*: the operation keeps running in its goroutine, so an operation
  that ignores the deadline (the state transaction handler passes `r.Context()` to
  `Multi`, `pkg/api/http/http.go` onPostStateTransaction) can still commit after the caller was
  told "context deadline exceeded". `Policy.run(..., honours_deadline=False)` models that; the
  default cancels the attempt, as a component honouring its context does. An open breaker's
  error is permanent (no retry); a `CodeError` stops retrying unless `matching` allows its code.
* `pkg/resiliency/retry.go`: `matching.httpStatusCodes` / `gRPCStatusCodes` ("500-599,429");
  without matching every code is retried. CodeErrors only come from service invocation.
* `pkg/resiliency/resiliency.go`: policies by name (later CRs overwrite), targets
  `apps`/`components` (inbound/outbound), default policies (`Default%sRetryPolicy` with levels
  `<Type>Component<Dir>`, `Component<Dir>`, `Component`, then the top-level name; `App` for
  apps), built-in retries (DaprBuiltInServiceRetries: constant 1 s, 3 retries; an override needs
  maxRetries >= 3), one breaker instance per component name per sidecar (shared by inbound and
  outbound), one per `<app>:<method>` endpoint for apps. A CR that fails to decode is skipped.
* dapr/kit `retry/retry.go` (defaults: constant 5 s; exponential initial 500 ms, x1.5,
  randomization 0.5, maxInterval 60 s, maxElapsedTime 15 min; maxRetries -1 = forever) over
  cenkalti/backoff/v4.
* `pkg/resiliency/breaker/circuitbreaker.go` over sony/gobreaker v0.5.0: `trip` is a CEL
  expression over requests, totalSuccesses, totalFailures, consecutiveSuccesses,
  consecutiveFailures (default: consecutiveFailures > 5); `interval` clears counts while closed
  (0 = never); `timeout` is the open period (default 60 s); half-open lets `maxRequests`
  (default 1) through, closes after that many consecutive successes, re-opens on a failure.
  Open: "circuit breaker is open"; half-open over the limit: "too many requests".

Time: retry waits and breaker periods go through a `Timer`. `SystemTimer(scale)` multiplies
them by `scale` (tests shrink a 30 s breaker to milliseconds); `VirtualTimer` makes them
instantaneous and lets a test `advance()` time. Timeouts always use real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .goformats import parse_duration

if TYPE_CHECKING:
    from .manifests import Manifests, ResiliencyResource

T = TypeVar("T")

BUILTIN_SERVICE_RETRIES = "DaprBuiltInServiceRetries"
_COMPONENT_TYPES = {
    "state": "Statestore",
    "pubsub": "Pubsub",
    "bindings": "Binding",
    "secretstores": "Secretstore",
    "configuration": "Configuration",
    "lock": "Lock",
    "crypto": "Crypto",
    "conversation": "Conversation",
}


# -- errors ---------------------------------------------------------------------------------------


class DeadlineExceeded(Exception):
    """context.DeadlineExceeded: the policy's timeout fired."""

    def __init__(self) -> None:
        super().__init__("context deadline exceeded")


class BreakerOpen(Exception):
    """gobreaker.ErrOpenState."""

    def __init__(self) -> None:
        super().__init__("circuit breaker is open")


class BreakerTooManyRequests(Exception):
    """gobreaker.ErrTooManyRequests (half-open, over maxRequests)."""

    def __init__(self) -> None:
        super().__init__("too many requests")


class CodeError(Exception):
    """resiliency.CodeError: an invocation answered with a status code `matching` can filter."""

    def __init__(self, status_code: int, payload: Any = None) -> None:
        super().__init__(f"status code {status_code}")
        self.status_code = status_code
        self.payload = payload


class Permanent(Exception):
    """backoff.Permanent: stop retrying and fail with `error`."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# -- time -----------------------------------------------------------------------------------------


class Timer(Protocol):
    def now(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...
    def scaled(self, seconds: float) -> float: ...


class SystemTimer:
    """Real monotonic time; retry waits and breaker periods multiplied by `scale`."""

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale

    def now(self) -> float:
        return time.monotonic()

    def scaled(self, seconds: float) -> float:
        return seconds * self.scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualTimer:
    """Time that moves only when told: `sleep` advances it at once, `advance` moves it on."""

    def __init__(self) -> None:
        self._now = 0.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def scaled(self, seconds: float) -> float:
        return seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self._now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self._now += seconds


# -- retries --------------------------------------------------------------------------------------


class RetryPolicy(Protocol):
    def backoff(self, attempt: int) -> float | None:
        """Seconds to wait before retry number `attempt` (1 = first retry); None = retries exhausted."""
        ...


def _codes(patterns: str, low: int, high: int) -> tuple[tuple[int, int], ...] | None:
    """retry.go parsePatterns: "500-599,429" -> ranges; "" -> None (retry every code)."""
    if not patterns:
        return None
    ranges = []
    for part in patterns.split(","):
        if not part:
            continue
        bounds = part.split("-")
        if len(bounds) > 2:
            raise ValueError(f"invalid pattern {part}, more than one '-' exists")
        start, end = int(bounds[0]), int(bounds[-1])
        if not low <= start <= high:
            raise ValueError(f"invalid pattern {part}, start code {start} is not valid")
        if not low <= end <= high:
            raise ValueError(f"invalid pattern {part}, end code {end} is not valid")
        if end < start:
            raise ValueError(f"invalid pattern {part}, start value should not bigger than end value")
        ranges.append((start, end))
    return tuple(ranges)


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / 1e9  # a bare number decodes as a time.Duration in nanoseconds
    return parse_duration(str(value)).total_seconds()


@dataclass
class Retry:
    """A retry policy (dapr/kit retry.Config + resiliency.RetryConditionMatch)."""

    policy: str = "constant"
    duration: float = 5.0
    initial_interval: float = 0.5
    randomization_factor: float = 0.5
    multiplier: float = 1.5
    max_interval: float = 60.0
    max_elapsed_time: float = 900.0
    max_retries: int = -1
    http_codes: tuple[tuple[int, int], ...] | None = None
    grpc_codes: tuple[tuple[int, int], ...] | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    @classmethod
    def decode(cls, spec: Mapping[str, Any]) -> Retry:
        retry = cls()
        for key, value in spec.items():
            if key == "policy":
                if str(value).lower() not in ("constant", "exponential"):
                    raise ValueError(f"unexpected back off policy type: {value}")
                retry.policy = str(value).lower()
            elif key == "duration":
                retry.duration = _seconds(value)
            elif key == "initialInterval":
                retry.initial_interval = _seconds(value)
            elif key == "maxInterval":
                retry.max_interval = _seconds(value)
            elif key == "maxElapsedTime":
                retry.max_elapsed_time = _seconds(value)
            elif key == "randomizationFactor":
                retry.randomization_factor = float(value)
            elif key == "multiplier":
                retry.multiplier = float(value)
            elif key == "maxRetries":
                retry.max_retries = int(value)
            elif key == "matching":
                retry.http_codes = _codes(str((value or {}).get("httpStatusCodes") or ""), 100, 599)
                retry.grpc_codes = _codes(str((value or {}).get("gRPCStatusCodes") or ""), 0, 16)
        return retry

    def backoff(self, attempt: int) -> float | None:
        if self.max_retries >= 0 and attempt > self.max_retries:
            return None
        if self.policy == "constant":
            return self.duration
        interval = min(self.initial_interval * self.multiplier ** (attempt - 1), self.max_interval)
        delta = self.randomization_factor * interval
        return self.rng.uniform(interval - delta, interval + delta)

    def retries_code(self, status_code: int) -> bool:
        """RetryConditionMatch.statusCodeNeedRetry: 0-16 are gRPC codes, 100-599 HTTP statuses."""
        if 0 <= status_code <= 16:
            ranges = self.grpc_codes
        elif 100 <= status_code <= 599:
            ranges = self.http_codes
        else:
            return False
        return ranges is None or any(lo <= status_code <= hi for lo, hi in ranges)


# -- circuit breakers -----------------------------------------------------------------------------


_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_]\w*)|(&&|\|\||==|!=|>=|<=|[<>!()+\-*/%]))")


def compile_trip(expression: str) -> Callable[[Mapping[str, int]], bool]:
    """The subset of CEL a `trip` uses: integers, the count names, + - * / %, comparisons, ! && || ( ).

    An expression that fails to evaluate never trips (circuitbreaker.go Initialize).
    """
    tokens: list[str] = []
    position = 0
    text = expression.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"invalid trip expression {expression!r}")
        tokens.append(match.group(0).strip())
        position = match.end()

    def evaluate(counts: Mapping[str, int]) -> bool:
        pos = 0

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def take() -> str:
            nonlocal pos
            pos += 1
            return tokens[pos - 1]

        def primary() -> Any:
            token = take()
            if token == "(":
                value = disjunction()
                if take() != ")":
                    raise ValueError("missing )")
                return value
            if token == "!":
                return not primary()
            if token == "-":
                return -primary()
            if token.isdigit():
                return int(token)
            if token in ("true", "false"):
                return token == "true"
            return counts[token]

        def product() -> Any:
            value = primary()
            while peek() in ("*", "/", "%"):
                op, rhs = take(), primary()
                value = value * rhs if op == "*" else (value // rhs if op == "/" else value % rhs)
            return value

        def total() -> Any:
            value = product()
            while peek() in ("+", "-"):
                op, rhs = take(), product()
                value = value + rhs if op == "+" else value - rhs
            return value

        def comparison() -> Any:
            value = total()
            ops = {
                ">=": int.__ge__,
                "<=": int.__le__,
                ">": int.__gt__,
                "<": int.__lt__,
                "==": int.__eq__,
                "!=": int.__ne__,
            }
            while peek() in ops:
                op = take()
                value = ops[op](int(value), int(total()))
            return value

        def conjunction() -> Any:
            value = comparison()
            while peek() == "&&":
                take()
                rhs = comparison()
                value = bool(value) and bool(rhs)
            return value

        def disjunction() -> Any:
            value = conjunction()
            while peek() == "||":
                take()
                rhs = conjunction()
                value = bool(value) or bool(rhs)
            return value

        try:
            result = disjunction()
            if pos != len(tokens):
                return False
        except (KeyError, ValueError, IndexError, ZeroDivisionError, TypeError):
            return False
        return result is True

    return evaluate


@dataclass
class Counts:
    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def as_cel(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "totalSuccesses": self.total_successes,
            "totalFailures": self.total_failures,
            "consecutiveSuccesses": self.consecutive_successes,
            "consecutiveFailures": self.consecutive_failures,
        }


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    """sony/gobreaker v0.5.0 state machine, with dapr's trip expression and defaults."""

    def __init__(
        self,
        name: str,
        *,
        max_requests: int = 0,
        interval: float = 0.0,
        timeout: float = 0.0,
        trip: str | None = None,
        timer: Timer,
    ) -> None:
        self.name = name
        self.max_requests = max_requests if max_requests > 0 else 1
        self.interval = timer.scaled(interval) if interval > 0 else 0.0
        self.timeout = timer.scaled(timeout if timeout > 0 else 60.0)
        self.trip_expression = trip
        self._trip = compile_trip(trip) if trip else None
        self._timer = timer
        self._state = CLOSED
        self._generation = 0
        self.counts = Counts()
        self._expiry: float | None = None
        self._new_generation(timer.now())
        self.transitions: list[tuple[str, str]] = []

    @classmethod
    def decode(cls, name: str, spec: Mapping[str, Any], timer: Timer) -> CircuitBreaker:
        return cls(
            name,
            max_requests=int(spec.get("maxRequests", 0) or 0),
            interval=_seconds(spec["interval"]) if spec.get("interval") not in (None, "") else 0.0,
            timeout=_seconds(spec["timeout"]) if spec.get("timeout") not in (None, "") else 0.0,
            trip=str(spec["trip"]) if spec.get("trip") else None,
            timer=timer,
        )

    def copy(self, name: str) -> CircuitBreaker:
        """A fresh instance of this template (resiliency.go newCB)."""
        clone = CircuitBreaker.__new__(CircuitBreaker)
        clone.__dict__.update(self.__dict__)
        clone.name = name
        clone.counts = Counts()
        clone.transitions = []
        clone._state = CLOSED
        clone._generation = 0
        clone._new_generation(self._timer.now())
        return clone

    @property
    def state(self) -> str:
        return self._current_state(self._timer.now())

    def _ready_to_trip(self) -> bool:
        if self._trip is None:
            return self.counts.consecutive_failures > 5
        return self._trip(self.counts.as_cel())

    def _new_generation(self, now: float) -> None:
        self._generation += 1
        self.counts = Counts()
        if self._state == CLOSED:
            self._expiry = now + self.interval if self.interval else None
        elif self._state == OPEN:
            self._expiry = now + self.timeout
        else:
            self._expiry = None

    def _set_state(self, state: str, now: float) -> None:
        if state == self._state:
            return
        self.transitions.append((self._state, state))
        self._state = state
        self._new_generation(now)

    def _current_state(self, now: float) -> str:
        if self._state == CLOSED and self._expiry is not None and self._expiry < now:
            self._new_generation(now)
        elif self._state == OPEN and self._expiry is not None and self._expiry < now:
            self._set_state(HALF_OPEN, now)
        return self._state

    def before(self) -> int:
        state = self._current_state(self._timer.now())
        if state == OPEN:
            raise BreakerOpen()
        if state == HALF_OPEN and self.counts.requests >= self.max_requests:
            raise BreakerTooManyRequests()
        self.counts.requests += 1
        return self._generation

    def after(self, generation: int, success: bool) -> None:
        now = self._timer.now()
        state = self._current_state(now)
        if generation != self._generation:
            return
        if success:
            self.counts.total_successes += 1
            self.counts.consecutive_successes += 1
            self.counts.consecutive_failures = 0
            if state == HALF_OPEN and self.counts.consecutive_successes >= self.max_requests:
                self._set_state(CLOSED, now)
            return
        self.counts.total_failures += 1
        self.counts.consecutive_failures += 1
        self.counts.consecutive_successes = 0
        if state == CLOSED and self._ready_to_trip():
            self._set_state(OPEN, now)
        elif state == HALF_OPEN:
            self._set_state(OPEN, now)


# -- policies -------------------------------------------------------------------------------------


@dataclass
class Policy:
    """A resolved policy definition (timeout, retry, breaker), run like NewRunnerWithOptions."""

    name: str
    timeout: float | None
    retry: Retry | None
    breaker: CircuitBreaker | None
    timer: Timer
    background: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    attempts: int = 0

    @property
    def has_retries(self) -> bool:
        return self.retry is not None and self.retry.max_retries != 0

    async def _timed(self, operation: Callable[[], Awaitable[T]], honours_deadline: bool) -> T:
        if not self.timeout:
            return await operation()
        task: asyncio.Task[T] = asyncio.ensure_future(operation())
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if task in done:
            return task.result()
        if honours_deadline:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        else:
            # The operation ignores the deadline: it keeps running (and may commit) after the caller
            # got "context deadline exceeded". Keep a reference so the double can wait for it.
            self.background.add(task)
            task.add_done_callback(self._forget)
        raise DeadlineExceeded()

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: the caller was already answered

    async def _attempt(self, operation: Callable[[], Awaitable[T]], honours_deadline: bool) -> T:
        self.attempts += 1
        if self.breaker is None:
            return await self._timed(operation, honours_deadline)
        generation = self.breaker.before()
        try:
            result = await self._timed(operation, honours_deadline)
        except BaseException:
            self.breaker.after(generation, False)
            raise
        self.breaker.after(generation, True)
        return result

    async def run(self, operation: Callable[[], Awaitable[T]], *, honours_deadline: bool = True) -> T:
        """Run `operation` under the policy; raise the last error when it gives up."""
        if self.retry is None:
            try:
                return await self._attempt(operation, honours_deadline)
            except Permanent as exc:
                raise exc.error from exc
        started = self.timer.now()
        retry_number = 0
        while True:
            try:
                return await self._attempt(operation, honours_deadline)
            except (BreakerOpen, BreakerTooManyRequests):
                raise
            except Permanent as exc:
                raise exc.error from exc
            except CodeError as exc:
                if not self.retry.retries_code(exc.status_code):
                    raise
                last: Exception = exc
            except Exception as exc:
                last = exc
            retry_number += 1
            wait = self.retry.backoff(retry_number)
            if wait is None:
                raise last
            wait = self.timer.scaled(wait)
            if self.retry.policy == "exponential" and self.retry.max_elapsed_time > 0:
                elapsed = self.timer.now() - started
                if elapsed + wait > self.timer.scaled(self.retry.max_elapsed_time):
                    raise last
            await self.timer.sleep(wait)


# -- the engine -----------------------------------------------------------------------------------


@dataclass
class _Targets:
    timeout: str = ""
    retry: str = ""
    breaker: str = ""

    @classmethod
    def decode(cls, spec: Mapping[str, Any] | None) -> _Targets:
        spec = spec or {}
        return cls(str(spec.get("timeout") or ""), str(spec.get("retry") or ""), str(spec.get("circuitBreaker") or ""))

    def __bool__(self) -> bool:
        return bool(self.timeout or self.retry or self.breaker)


class SidecarResiliency:
    """One daprd's `*resiliency.Resiliency`: the CRs in its scope, decoded, plus breaker state."""

    def __init__(self, resources: Iterable[ResiliencyResource], timer: Timer) -> None:
        self.timer = timer
        self.names: list[str] = []
        self.errors: list[str] = []
        self.timeouts: dict[str, float] = {}
        self.retries: dict[str, Retry] = {
            # addBuiltInPolicies (only the one the double's API surface can reach).
            BUILTIN_SERVICE_RETRIES: Retry(policy="constant", duration=1.0, max_retries=3),
        }
        self.breakers: dict[str, CircuitBreaker] = {}
        self.apps: dict[str, _Targets] = {}
        self.components: dict[str, tuple[_Targets, _Targets]] = {}  # name -> (inbound, outbound)
        self._component_cbs: dict[str, CircuitBreaker] = {}
        self._endpoint_cbs: dict[tuple[str, str], CircuitBreaker] = {}
        self.background: set[asyncio.Task[Any]] = set()
        for resource in resources:
            try:
                self._decode(resource)
            except (ValueError, TypeError, KeyError) as exc:
                self.errors.append(f"Could not read resiliency policy {resource.name}: {exc}")
                continue
            self.names.append(resource.name)

    def _decode(self, resource: ResiliencyResource) -> None:
        policies = resource.policies
        timeouts = {n: _seconds(v) for n, v in (policies.get("timeouts") or {}).items()}
        retries: dict[str, Retry] = {}
        for name, spec in (policies.get("retries") or {}).items():
            retry = Retry.decode(spec or {})
            if name == BUILTIN_SERVICE_RETRIES and retry.max_retries < 3:
                retry.max_retries = 3  # "did not meet minimum retry count, resetting to 3"
            retries[name] = retry
        breakers = {
            n: CircuitBreaker.decode(n, spec or {}, self.timer)
            for n, spec in (policies.get("circuitBreakers") or {}).items()
        }
        targets = resource.targets
        apps = {n: _Targets.decode(t) for n, t in (targets.get("apps") or {}).items()}
        components = {
            n: (_Targets.decode((t or {}).get("inbound")), _Targets.decode((t or {}).get("outbound")))
            for n, t in (targets.get("components") or {}).items()
        }
        self.timeouts.update(timeouts)
        self.retries.update(retries)
        self.breakers.update(breakers)
        self.apps.update(apps)
        self.components.update(components)

    def _default(self, levels: list[str]) -> _Targets:
        def pick(template: str, table: Mapping[str, Any]) -> str:
            for level in [*levels, ""]:
                name = template % level
                if name in table:
                    return name
            return ""

        return _Targets(
            pick("Default%sTimeoutPolicy", self.timeouts),
            pick("Default%sRetryPolicy", self.retries),
            pick("Default%sCircuitBreakerPolicy", self.breakers),
        )

    def _policy(self, name: str, names: _Targets, breaker: Callable[[CircuitBreaker], CircuitBreaker]) -> Policy | None:
        if not names:
            return None
        template = self.breakers.get(names.breaker) if names.breaker else None
        return Policy(
            name=name,
            timeout=self.timeouts.get(names.timeout) if names.timeout else None,
            retry=self.retries.get(names.retry) if names.retry else None,
            breaker=breaker(template) if template is not None else None,
            timer=self.timer,
            background=self.background,
        )

    def _component_cb(self, component: str, template: CircuitBreaker) -> CircuitBreaker:
        if component not in self._component_cbs:
            self._component_cbs[component] = template.copy(component)
        return self._component_cbs[component]

    def component(self, component: str, component_type: str, direction: str) -> Policy | None:
        """ComponentOutboundPolicy / ComponentInboundPolicy."""
        if component in self.components:
            inbound, outbound = self.components[component]
            names = inbound if direction == "Inbound" else outbound
        else:
            names = self._default([f"{component_type}Component{direction}", f"Component{direction}", "Component"])
        suffix = "input" if direction == "Inbound" else "output"
        return self._policy(f"component[{component}] {suffix}", names, lambda t: self._component_cb(component, t))

    def endpoint(self, target: str, method: str) -> Policy | None:
        """EndpointPolicy(target, "<target>:<method>")."""
        endpoint = f"{target}:{method}"
        names = self.apps.get(target) or self._default(["App"])

        def cb(template: CircuitBreaker) -> CircuitBreaker:
            key = (target, endpoint)
            if key not in self._endpoint_cbs:
                self._endpoint_cbs[key] = template.copy(endpoint)
            return self._endpoint_cbs[key]

        return self._policy(f"endpoint[{target}, {endpoint}]", names, cb)

    def builtin(self, name: str) -> Policy:
        return Policy(name=name, timeout=None, retry=self.retries.get(name), breaker=None, timer=self.timer)


class Resiliency:
    """Every sidecar's resiliency engine, by app id, built from the manifests on first use."""

    def __init__(
        self,
        resources_for: Callable[[str], Iterable[ResiliencyResource]],
        *,
        component_types: Callable[[str, str], str | None] | None = None,
        timer: Timer | None = None,
    ) -> None:
        self._resources_for = resources_for
        self._component_types = component_types or (lambda app_id, name: None)
        self.timer: Timer = timer or SystemTimer()
        self._sidecars: dict[str, SidecarResiliency] = {}

    @classmethod
    def none(cls, timer: Timer | None = None) -> Resiliency:
        """No Resiliency CRs: only daprd's built-in defaults."""
        return cls(lambda app_id: (), timer=timer)

    @classmethod
    def from_manifests(cls, manifests: Manifests, timer: Timer | None = None) -> Resiliency:
        def component_type(app_id: str, name: str) -> str | None:
            for comp in manifests.components_for(app_id):
                if comp.name == name:
                    return comp.kind
            return None

        return cls(manifests.resiliency_for, component_types=component_type, timer=timer)

    def sidecar(self, app_id: str) -> SidecarResiliency:
        if app_id not in self._sidecars:
            self._sidecars[app_id] = SidecarResiliency(self._resources_for(app_id), self.timer)
        return self._sidecars[app_id]

    def _type(self, app_id: str, component: str, component_type: str | None) -> str:
        kind = component_type or self._component_types(app_id, component) or ""
        return _COMPONENT_TYPES.get(kind, kind[:1].upper() + kind[1:])

    def component_outbound(self, app_id: str, component: str, component_type: str | None = None) -> Policy | None:
        """The policy app `app_id`'s sidecar applies to calls into `component` (state, publish)."""
        return self.sidecar(app_id).component(component, self._type(app_id, component, component_type), "Outbound")

    def component_inbound(self, app_id: str, component: str, component_type: str | None = None) -> Policy | None:
        """The policy app `app_id`'s sidecar applies to deliveries from `component` to the app."""
        return self.sidecar(app_id).component(component, self._type(app_id, component, component_type), "Inbound")

    def app_target(self, app_id: str, target_app_id: str, method: str = "") -> Policy | None:
        """The policy app `app_id`'s sidecar applies to service invocation of `target_app_id`."""
        return self.sidecar(app_id).endpoint(target_app_id, method)

    def builtin_service_retries(self, app_id: str) -> Policy:
        """DaprBuiltInServiceRetries: used by direct messaging only when no app policy targets the callee,
        and only for transport errors (gRPC Unavailable/Unauthenticated) between sidecars
        (`pkg/messaging/direct_messaging.go` invokeWithRetry)."""
        return self.sidecar(app_id).builtin(BUILTIN_SERVICE_RETRIES)

    def has_app_target(self, app_id: str, target_app_id: str) -> bool:
        """PolicyDefined(target, EndpointPolicy{})."""
        return target_app_id in self.sidecar(app_id).apps

    def loaded(self, app_id: str) -> list[str]:
        """Names of the Resiliency CRs the sidecar loaded (1.18's metadata `resiliencies`)."""
        return list(self.sidecar(app_id).names)

    async def drain(self) -> None:
        """Wait for operations still running after their timeout fired."""
        for sidecar in self._sidecars.values():
            while sidecar.background:
                await asyncio.gather(*list(sidecar.background), return_exceptions=True)
