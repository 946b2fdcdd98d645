"""Service-invocation access control, as the callee's daprd applies it.

Follows dapr/dapr at v1.16.19 / v1.17.13 / v1.18.3 (unchanged between them):
* `pkg/acl/acl.go` ParseAccessControlSpec (defaults: trust domain "public"; no global
  defaultAction with policies present = deny; a policy without trustDomain or namespace makes
  the whole spec invalid) and isOperationAllowedByAccessControlPolicy (policy looked up by
  caller app id + namespace; trust domain and namespace must match; the app's defaultAction
  replaces the global one; operation match; the HTTP verb or "*" picks the action);
* `pkg/config/acl_trie.go` (operation matching: `/*` one segment, `/**` any number, `*` inside
  a segment any characters; HTTP operations are lower-cased);
* `pkg/api/grpc/daprinternal.go` callLocalValidateACL: the callee denies with gRPC
  PermissionDenied "access control policy has denied access to id: <spiffe id> operation:
  <method> verb: <VERB>", which the caller's `onDirectMessage` (`pkg/api/http/directmessaging.go`)
  answers as HTTP 403 with ERR_DIRECT_INVOKE "failed to invoke, id: <target>, err: rpc error:
  code = PermissionDenied desc = ...".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_TRUST_DOMAIN = "public"


@dataclass(frozen=True)
class OperationRule:
    pattern: str  # starts with "/", lower-cased (HTTP apps)
    verbs: Mapping[str, str]  # VERB or "*" -> action
    action: str


@dataclass(frozen=True)
class AppPolicy:
    app_id: str
    namespace: str
    trust_domain: str
    default_action: str
    operations: tuple[OperationRule, ...]

    def find(self, operation: str) -> OperationRule | None:
        # The trie keeps the first rule registered for a path; earlier rules win.
        for rule in self.operations:
            if _operation_matches(rule.pattern, operation):
                return rule
        return None


@dataclass(frozen=True)
class AccessControlList:
    default_action: str
    trust_domain: str
    policies: Mapping[tuple[str, str], AppPolicy]

    def check(self, *, caller: str, namespace: str, trust_domain: str, operation: str, verb: str) -> str | None:
        """None when allowed, else daprd's denial message (the callee's PermissionDenied text)."""
        action = self.default_action
        policy = self.policies.get((caller, namespace))
        if policy is not None and policy.trust_domain == trust_domain and policy.namespace == namespace:
            if policy.default_action:
                action = policy.default_action
            op = operation if operation.startswith("/") else "/" + operation
            rule = policy.find(op.lower())
            if rule is not None:
                if verb:
                    action = rule.verbs.get(verb, rule.verbs.get("*", action))
                else:
                    action = policy.default_action
        if action.lower() == "allow":
            return None
        spiffe = f"spiffe://{trust_domain}/ns/{namespace}/{caller}"
        return f"access control policy has denied access to id: {spiffe} operation: {operation} verb: {verb or 'NONE'}"


def parse_access_control(spec: Mapping[str, Any] | None) -> AccessControlList | None:
    """ParseAccessControlSpec; None when no ACL is specified. Raises ValueError when invalid."""
    if not spec or (not spec.get("trustDomain") and not spec.get("defaultAction") and not spec.get("policies")):
        return None
    policies_spec = spec.get("policies")
    default = str(spec.get("defaultAction") or "").lower()
    if not default:
        default = "deny" if policies_spec is None or len(policies_spec) > 0 else "allow"
    policies: dict[tuple[str, str], AppPolicy] = {}
    missing_td: list[str] = []
    missing_ns: list[str] = []
    missing_name = False
    for entry in policies_spec or []:
        app = str(entry.get("appId") or "")
        td = str(entry.get("trustDomain") or "")
        ns = str(entry.get("namespace") or "")
        missing_name = missing_name or not app
        if not td:
            missing_td.append(app)
        if not ns:
            missing_ns.append(app)
        if not app or not td or not ns:
            continue
        rules = []
        for op in entry.get("operations") or []:
            name = str(op.get("name") or "")
            name = (name if name.startswith("/") else "/" + name).lower()
            action = str(op.get("action") or "")
            rules.append(OperationRule(name, {str(v): action for v in op.get("httpVerb") or ()}, action))
        policies[(app, ns)] = AppPolicy(app, ns, td, str(entry.get("defaultAction") or ""), tuple(rules))
    if missing_td or missing_ns or missing_name:
        raise ValueError(
            "invalid access control spec. missing trustdomain for apps: "
            f"{missing_td}, missing namespace for apps: {missing_ns}, "
            f"missing app name on at least one of the app policies: {str(missing_name).lower()}"
        )
    return AccessControlList(default, str(spec.get("trustDomain") or DEFAULT_TRUST_DOMAIN), policies)


def _wildcard_match(target: str, pattern: str) -> bool:
    """acl_trie.go isMatch: `*` matches any run of characters (the leading "/" included)."""
    regex = "".join(".*" if ch == "*" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, target, flags=re.DOTALL) is not None


def _node_matches(node: str, segment: str, is_end: bool) -> bool:
    """findNodeWithWildcard for one trie node: exact, `/*` (last segment only), `/**`, or isMatch."""
    if node == segment:
        return True
    if node == "/*":
        return is_end
    if node == "/**":
        return True
    return _wildcard_match(segment, node)


def _operation_matches(pattern: str, operation: str) -> bool:
    """Trie.Search over the one-rule trie of `pattern` (pkg/config/acl_trie.go).

    Quirks kept: a rule matches any operation that extends it ("/a" matches "/a/b"), `/*` and
    `/**` also match nothing after the last segment ("/a/**" matches "/a"), and `/*` never
    matches in the middle of a path.
    """
    nodes = ["/" + p for p in pattern.split("/")[1:]]
    segments = ["/" + s for s in operation.split("/")[1:]]
    depth = 0
    for index, segment in enumerate(segments):
        is_end = index == len(segments) - 1
        if depth >= len(nodes) or not _node_matches(nodes[depth], segment, is_end):
            return False
        depth += 1
        if depth == len(nodes):  # the node holding the rule
            return is_end or not (nodes[-1].endswith("/*") and not nodes[-1].endswith("/**"))
        if is_end:
            return depth == len(nodes) - 1 and _node_matches(nodes[depth], "/*", True)
    return False
