"""Dapr manifests (Component, Configuration, Resiliency) parsed from multi-document Kubernetes YAML.

The YAML is what ships: the Helm chart rendered with helm-python-sdk (`render_chart`, through
tests/deploy/deploy_support.py) or dapr-components/*.yaml. A sidecar loads what daprd would load:

* Components: every Component whose `scopes` is empty or lists the app id
  (dapr/dapr `pkg/runtime/processor/components.go` / `pkg/internal/loader`, "isComponentScoped"
  semantics: no scopes = every app). Metadata values are strings; a `secretKeyRef` entry is kept
  in `secret_refs` (the double has no Kubernetes secrets to resolve it against).
* Configuration: the one named by the pod's `dapr.io/config` annotation (the chart has one);
  `spec.secrets.scopes` (`pkg/config/configuration.go` SecretsScope) and `spec.accessControl`
  (`pkg/acl/acl.go` ParseAccessControlSpec, see `acl.py`).
* Resiliency: every CR whose `scopes` is empty or lists the app id
  (`pkg/resiliency/resiliency.go` filterResiliencyConfigs); the policies are decoded by
  `resiliency.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .acl import AccessControlList, parse_access_control

DAPR_API_GROUP = "dapr.io/"


@dataclass(frozen=True)
class Component:
    name: str
    type: str
    version: str
    metadata: Mapping[str, str]
    scopes: tuple[str, ...] = ()
    namespace: str = ""
    secret_refs: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The building block: "state", "pubsub", "secretstores", "bindings", ..."""
        return self.type.split(".", 1)[0]

    def loaded_by(self, app_id: str) -> bool:
        """daprd loads a component with no scopes in every app, else only in the listed app ids."""
        return not self.scopes or app_id in self.scopes

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Component:
        spec = doc.get("spec") or {}
        meta: dict[str, str] = {}
        refs: dict[str, tuple[str, str]] = {}
        for item in spec.get("metadata") or []:
            name = str(item["name"])
            if "secretKeyRef" in item:
                ref = item["secretKeyRef"] or {}
                refs[name] = (str(ref.get("name", "")), str(ref.get("key", "")))
                continue
            value = item.get("value", "")
            # Go's YAML decoder reads the value as a string (DynamicValue); keep YAML scalars as text.
            meta[name] = value if isinstance(value, str) else yaml.safe_dump(value).strip().removesuffix("...").strip()
        return cls(
            name=str(doc["metadata"]["name"]),
            type=str(spec.get("type", "")),
            version=str(spec.get("version", "")),
            metadata=meta,
            scopes=tuple(str(s) for s in doc.get("scopes") or ()),
            namespace=str(doc["metadata"].get("namespace", "")),
            secret_refs=refs,
        )


@dataclass(frozen=True)
class SecretScope:
    """`spec.secrets.scopes[]` of a Configuration (pkg/config/configuration.go SecretsScope)."""

    store: str
    default_access: str = "allow"
    allowed: tuple[str, ...] = ()
    denied: tuple[str, ...] = ()

    def allows(self, key: str) -> bool:
        """SecretsScope.IsSecretAllowed: a non-empty allow list decides alone; then the deny list;
        then defaultAccess (allow unless "deny", case-insensitive)."""
        if self.allowed:
            return key in self.allowed
        if key in self.denied:
            return False
        return self.default_access.lower() != "deny"


@dataclass(frozen=True)
class Configuration:
    name: str
    namespace: str
    secret_scopes: Mapping[str, SecretScope]
    access_control: AccessControlList | None
    raw: Mapping[str, Any]

    def secret_allowed(self, store: str, key: str) -> bool:
        """Universal.isSecretAllowed (pkg/api/universal/secrets.go): no scope for the store = allowed."""
        scope = self.secret_scopes.get(store)
        return True if scope is None else scope.allows(key)

    @property
    def trust_domain(self) -> str:
        """The trust domain of this app's identity (spec.accessControl.trustDomain, default "public")."""
        spec = self.raw.get("spec") or {}
        return str((spec.get("accessControl") or {}).get("trustDomain") or "public")

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Configuration:
        spec = doc.get("spec") or {}
        scopes = {}
        for entry in (spec.get("secrets") or {}).get("scopes") or []:
            scope = SecretScope(
                store=str(entry["storeName"]),
                default_access=str(entry.get("defaultAccess") or "allow"),
                allowed=tuple(str(s) for s in entry.get("allowedSecrets") or ()),
                denied=tuple(str(s) for s in entry.get("deniedSecrets") or ()),
            )
            scopes[scope.store] = scope
        return cls(
            name=str(doc["metadata"]["name"]),
            namespace=str(doc["metadata"].get("namespace", "")),
            secret_scopes=scopes,
            access_control=parse_access_control(spec.get("accessControl")),
            raw=doc,
        )


@dataclass(frozen=True)
class ResiliencyResource:
    """One Resiliency CR: `spec.policies` and `spec.targets` as written, decoded by resiliency.py."""

    name: str
    namespace: str
    scopes: tuple[str, ...]
    policies: Mapping[str, Any]
    targets: Mapping[str, Any]

    def applies_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ResiliencyResource:
        spec = doc.get("spec") or {}
        return cls(
            name=str(doc["metadata"]["name"]),
            namespace=str(doc["metadata"].get("namespace", "")),
            scopes=tuple(str(s) for s in doc.get("scopes") or ()),
            policies=spec.get("policies") or {},
            targets=spec.get("targets") or {},
        )


@dataclass(frozen=True)
class Manifests:
    """The Dapr resources of one deployment."""

    components: tuple[Component, ...] = ()
    configurations: tuple[Configuration, ...] = ()
    resiliencies: tuple[ResiliencyResource, ...] = ()

    @classmethod
    def from_yaml(cls, text: str) -> Manifests:
        return cls.from_docs(d for d in yaml.safe_load_all(text) if d)

    @classmethod
    def from_docs(cls, docs: Iterable[Mapping[str, Any]]) -> Manifests:
        components: list[Component] = []
        configurations: list[Configuration] = []
        resiliencies: list[ResiliencyResource] = []
        for doc in docs:
            if not str(doc.get("apiVersion", "")).startswith(DAPR_API_GROUP):
                continue
            kind = doc.get("kind")
            if kind == "Component":
                components.append(Component.from_doc(doc))
            elif kind == "Configuration":
                configurations.append(Configuration.from_doc(doc))
            elif kind == "Resiliency":
                resiliencies.append(ResiliencyResource.from_doc(doc))
        return cls(tuple(components), tuple(configurations), tuple(resiliencies))

    def component(self, name: str) -> Component:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def components_for(self, app_id: str, kind: str | None = None) -> tuple[Component, ...]:
        """The components app `app_id`'s sidecar loads (optionally of one building block)."""
        return tuple(c for c in self.components if c.loaded_by(app_id) and (kind is None or c.kind == kind))

    @property
    def configuration(self) -> Configuration | None:
        """The deployment's Configuration (the chart renders exactly one)."""
        if len(self.configurations) > 1:
            raise ValueError("several Configurations: pick one with configuration_named()")
        return self.configurations[0] if self.configurations else None

    def configuration_named(self, name: str) -> Configuration:
        for config in self.configurations:
            if config.name == name:
                return config
        raise KeyError(name)

    def resiliency_for(self, app_id: str) -> tuple[ResiliencyResource, ...]:
        """The Resiliency CRs daprd loads for `app_id` (no scopes = every app)."""
        return tuple(r for r in self.resiliencies if r.applies_to(app_id))

    @property
    def namespace(self) -> str:
        """The namespace the resources live in (the chart's release namespace)."""
        for item in (*self.components, *self.configurations, *self.resiliencies):
            if item.namespace:
                return item.namespace
        return ""


@functools.cache
def _rendered_chart_yaml(values_files: tuple[str, ...]) -> str:
    from tests.deploy.deploy_support import render, user_values  # the chart's own test support

    rendered = render(user_values(values_files, {}), name="dapr-double")
    return yaml.safe_dump_all([d for d in rendered.docs if str(d.get("apiVersion", "")).startswith(DAPR_API_GROUP)])


def render_chart(values_files: tuple[str, ...] = ("values-minikube.yaml",)) -> Manifests:
    """The chart's Dapr manifests, rendered with the real Helm engine (cached per values files)."""
    return Manifests.from_yaml(_rendered_chart_yaml(tuple(values_files)))
