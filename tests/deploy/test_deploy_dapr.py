"""Dapr: components, Configuration and Resiliency match what Dapr documents and what doable.platform.topology says.

Checked for the chart's rendered resources (every values variant) and for the static files in
dapr-components/kubernetes and dapr-components/local. The field lists below are transcribed from
the Dapr documentation pages cited next to each entry; a metadata field Dapr does not document for
that component type is a typo that Dapr would silently ignore, so it fails here.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_support import CHART, REPO, Rendered, load_yaml_docs, pod_annotations

from doable.adapters.dapr.invocation import INTERNAL_CALLERS
from doable.platform import topology

COMPONENTS_DIR = REPO / "dapr-components"

# Metadata fields every pub/sub component accepts (topic scoping, handled by the runtime):
# https://docs.dapr.io/developing-applications/building-blocks/pubsub/pubsub-scopes/
PUBSUB_COMMON = {"allowedTopics", "publishingScopes", "subscriptionScopes", "protectedTopics"}
# Metadata fields every state store accepts (handled by the runtime):
# https://docs.dapr.io/developing-applications/building-blocks/state-management/howto-share-state/
STATE_COMMON = {"keyPrefix", "actorStateStore"}
# Every binding accepts `route`, `direction`:
# https://docs.dapr.io/reference/components-reference/supported-bindings/  (common "direction" and "route")
BINDING_COMMON = {"route", "direction"}

#: type -> documented version, documented metadata fields, required fields, enumerated values.
DOCUMENTED: dict[str, dict[str, Any]] = {
    # https://docs.dapr.io/reference/components-reference/supported-pubsub/setup-apache-kafka/
    "pubsub.kafka": {
        "version": "v1",
        "fields": PUBSUB_COMMON
        | {
            "brokers",
            "consumerGroup",
            "consumerID",
            "clientID",
            "authRequired",
            "authType",
            "saslUsername",
            "saslPassword",
            "saslMechanism",
            "initialOffset",
            "maxMessageBytes",
            "consumeRetryInterval",
            "consumeRetryEnabled",
            "version",
            "caCert",
            "clientCert",
            "clientKey",
            "skipVerify",
            "disableTls",
            "oidcTokenEndpoint",
            "oidcClientID",
            "oidcClientSecret",
            "oidcScopes",
            "heartbeatInterval",
            "sessionTimeout",
            "consumerFetchMin",
            "consumerFetchDefault",
            "channelBufferSize",
            "escapeHeaders",
            "excludeHeaderMetaRegex",
            "compression",
            "schemaRegistryURL",
            "schemaRegistryAPIKey",
            "schemaRegistryAPISecret",
            "schemaCachingEnabled",
            "schemaLatestVersionCacheTTL",
            "clientConnectionTopicMetadataRefreshInterval",
            "clientConnectionKeepAliveInterval",
            "consumerGroupRebalanceStrategy",
        },
        "required": {"brokers", "authType"},
        "enums": {
            "authType": {"none", "password", "mtls", "oidc", "oidc_private_key_jwt", "awsiam"},
            # Dapr's spelling: "SCRAM-SHA-256" silently falls back to PLAIN.
            "saslMechanism": {"SHA-256", "SHA-512", "PLAINTEXT"},
            "initialOffset": {"oldest", "newest"},
            "disableTls": {"true", "false"},
        },
    },
    # https://docs.dapr.io/reference/components-reference/supported-state-stores/setup-postgresql-v1/
    "state.postgresql": {
        "version": "v1",
        "fields": STATE_COMMON
        | {
            "connectionString",
            "timeout",
            "tableName",
            "metadataTableName",
            "cleanupInterval",
            "maxConns",
            "connectionMaxIdleTime",
            "queryExecMode",
            "useAzureAD",
            "azureClientId",
            "azureTenantId",
            "azureClientSecret",
            "useAWSIAM",
            "awsRegion",
            "awsAccessKey",
            "awsSecretKey",
            "awsSessionToken",
            "host",
            "port",
            "database",
            "user",
            "password",
            "sslRootCert",
        },
        "required": {"connectionString"},
        "enums": {
            "actorStateStore": {"true", "false"},
            "queryExecMode": {"simple_protocol", "exec", "cache_statement", "cache_describe", "describe_exec"},
        },
    },
    # https://docs.dapr.io/reference/components-reference/supported-secret-stores/kubernetes-secret-store/
    "secretstores.kubernetes": {
        "version": "v1",
        "fields": {"defaultNamespace", "kubeconfigPath"},
        "required": set(),
        "enums": {},
    },
    # https://docs.dapr.io/reference/components-reference/supported-bindings/cron/
    "bindings.cron": {
        "version": "v1",
        "fields": BINDING_COMMON | {"schedule"},
        "required": {"schedule"},
        "enums": {"direction": {"input"}},
    },
    # https://docs.dapr.io/reference/components-reference/supported-pubsub/setup-redis-pubsub/
    "pubsub.redis": {
        "version": "v1",
        "fields": PUBSUB_COMMON
        | {
            "redisHost",
            "redisPassword",
            "redisUsername",
            "consumerID",
            "useEntraID",
            "enableTLS",
            "clientCert",
            "clientKey",
            "redeliverInterval",
            "processingTimeout",
            "queueDepth",
            "concurrency",
            "redisType",
            "redisDB",
            "redisMaxRetries",
            "redisMinRetryInterval",
            "redisMaxRetryInterval",
            "dialTimeout",
            "readTimeout",
            "writeTimeout",
            "poolSize",
            "poolTimeout",
            "maxConnAge",
            "minIdleConns",
            "idleCheckFrequency",
            "idleTimeout",
            "failover",
            "sentinelMasterName",
            "sentinelUsername",
            "sentinelPassword",
            "maxLenApprox",
            "streamTTL",
        },
        "required": {"redisHost"},
        "enums": {},
    },
    # https://docs.dapr.io/reference/components-reference/supported-state-stores/setup-redis/
    "state.redis": {
        "version": "v1",
        "fields": STATE_COMMON
        | {
            "redisHost",
            "redisPassword",
            "redisUsername",
            "useEntraID",
            "enableTLS",
            "clientCert",
            "clientKey",
            "maxRetries",
            "maxRetryBackoff",
            "failover",
            "sentinelMasterName",
            "sentinelUsername",
            "sentinelPassword",
            "redeliverInterval",
            "processingTimeout",
            "redisType",
            "redisDB",
            "redisMaxRetries",
            "redisMinRetryInterval",
            "redisMaxRetryInterval",
            "dialTimeout",
            "readTimeout",
            "writeTimeout",
            "poolSize",
            "poolTimeout",
            "maxConnAge",
            "minIdleConns",
            "idleCheckFrequency",
            "idleTimeout",
            "ttlInSeconds",
            "queryIndexes",
        },
        "required": {"redisHost"},
        "enums": {"actorStateStore": {"true", "false"}},
    },
    # https://docs.dapr.io/reference/components-reference/supported-secret-stores/file-secret-store/
    "secretstores.local.file": {
        "version": "v1",
        "fields": {"secretsFile", "nestedSeparator", "multiValued"},
        "required": {"secretsFile"},
        "enums": {"multiValued": {"true", "false"}},
    },
}

# Shape of a Component: https://docs.dapr.io/reference/resource-specs/component-schema/
COMPONENT_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "dapr.io/v1alpha1"},
        "kind": {"const": "Component"},
        "auth": {"type": "object", "properties": {"secretStore": {"type": "string"}}, "additionalProperties": False},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}},
        },
        "spec": {
            "type": "object",
            "required": ["type", "version", "metadata"],
            "additionalProperties": False,
            "properties": {
                "type": {"type": "string"},
                "version": {"type": "string", "pattern": "^v[0-9]+$"},
                "ignoreErrors": {"type": "boolean"},
                "initTimeout": {"type": "string"},
                "metadata": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string"},
                            "value": {"type": "string"},
                            "secretKeyRef": {
                                "type": "object",
                                "required": ["name", "key"],
                                "additionalProperties": False,
                                "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                            },
                        },
                        "oneOf": [{"required": ["value"]}, {"required": ["secretKeyRef"]}],
                    },
                },
            },
        },
        "scopes": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
}

DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
# https://docs.dapr.io/reference/resource-specs/resiliency-schema/
RESILIENCY_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "dapr.io/v1alpha1"},
        "kind": {"const": "Resiliency"},
        "scopes": {"type": "array", "items": {"type": "string"}},
        "spec": {
            "type": "object",
            "required": ["policies", "targets"],
            "additionalProperties": False,
            "properties": {
                "policies": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "timeouts": {"type": "object", "additionalProperties": DURATION},
                        "retries": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["policy"],
                                "additionalProperties": False,
                                "properties": {
                                    "policy": {"enum": ["constant", "exponential"]},
                                    "duration": DURATION,
                                    "maxInterval": DURATION,
                                    "maxRetries": {"type": "integer", "minimum": -1},
                                    "matching": {"type": "object"},
                                },
                            },
                        },
                        "circuitBreakers": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "required": ["trip"],
                                "additionalProperties": False,
                                "properties": {
                                    "maxRequests": {"type": "integer", "minimum": 1},
                                    "interval": DURATION,
                                    "timeout": DURATION,
                                    "trip": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "targets": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "apps": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "timeout": {"type": "string"},
                                    "retry": {"type": "string"},
                                    "circuitBreaker": {"type": "string"},
                                    "circuitBreakerCacheSize": {"type": "integer"},
                                },
                            },
                        },
                        "actors": {"type": "object"},
                        "components": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    d: {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "timeout": {"type": "string"},
                                            "retry": {"type": "string"},
                                            "circuitBreaker": {"type": "string"},
                                        },
                                    }
                                    for d in ("inbound", "outbound")
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

# https://docs.dapr.io/reference/resource-specs/configuration-schema/
CONFIGURATION_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "dapr.io/v1alpha1"},
        "kind": {"const": "Configuration"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "tracing": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "samplingRate": {"type": "string"},
                        "stdout": {"type": "boolean"},
                        "otel": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["endpointAddress"],
                            "properties": {
                                "endpointAddress": {"type": "string"},
                                "isSecure": {"type": "boolean"},
                                "protocol": {"enum": ["grpc", "http"]},
                            },
                        },
                        "zipkin": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"endpointAddress": {"type": "string"}},
                        },
                    },
                },
                "metrics": {
                    "type": "object",
                    "required": ["enabled"],
                    "properties": {
                        "enabled": {"type": "boolean"},
                        "rules": {"type": "array"},
                        "recordErrorCodes": {"type": "boolean"},
                        "latencyDistributionBuckets": {"type": "array"},
                        "http": {"type": "object"},
                    },
                    "additionalProperties": False,
                },
                "logging": {
                    "type": "object",
                    "properties": {
                        "apiLogging": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "enabled": {"type": "boolean"},
                                "obfuscateURLs": {"type": "boolean"},
                                "omitHealthChecks": {"type": "boolean"},
                            },
                        }
                    },
                    "additionalProperties": False,
                },
                "secrets": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "scopes": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["storeName"],
                                "additionalProperties": False,
                                "properties": {
                                    "storeName": {"type": "string"},
                                    "defaultAccess": {"enum": ["allow", "deny"]},
                                    "allowedSecrets": {"type": "array", "items": {"type": "string"}},
                                    "deniedSecrets": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        }
                    },
                },
                "accessControl": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "defaultAction": {"enum": ["allow", "deny"]},
                        "trustDomain": {"type": "string"},
                        "policies": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["appId"],
                                "additionalProperties": False,
                                "properties": {
                                    "appId": {"type": "string"},
                                    "defaultAction": {"enum": ["allow", "deny"]},
                                    "trustDomain": {"type": "string"},
                                    "namespace": {"type": "string"},
                                    "operations": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name", "action"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "name": {"type": "string"},
                                                "httpVerb": {"type": "array", "items": {"type": "string"}},
                                                "action": {"enum": ["allow", "deny"]},
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
                "api": {"type": "object"},
                "httpPipeline": {"type": "object"},
                "appHttpPipeline": {"type": "object"},
                "nameResolution": {"type": "object"},
                "features": {"type": "array"},
                "components": {"type": "object"},
            },
        },
    },
}

#: Every dapr.io/* pod annotation the sidecar injector reads (dapr/dapr pkg/injector/patcher/sidecar.go,
#: documented at https://docs.dapr.io/reference/arguments-annotations-overview/).
DAPR_ANNOTATIONS = {
    "dapr.io/enabled",
    "dapr.io/app-port",
    "dapr.io/config",
    "dapr.io/app-protocol",
    "dapr.io/app-ssl",
    "dapr.io/app-id",
    "dapr.io/enable-profiling",
    "dapr.io/log-level",
    "dapr.io/api-token-secret",
    "dapr.io/app-token-secret",
    "dapr.io/log-as-json",
    "dapr.io/app-max-concurrency",
    "dapr.io/enable-metrics",
    "dapr.io/metrics-port",
    "dapr.io/enable-debug",
    "dapr.io/debug-port",
    "dapr.io/env",
    "dapr.io/env-from-secret",
    "dapr.io/grpc-port",
    "dapr.io/internal-grpc-port",
    "dapr.io/sidecar-cpu-request",
    "dapr.io/sidecar-cpu-limit",
    "dapr.io/sidecar-memory-request",
    "dapr.io/sidecar-memory-limit",
    "dapr.io/sidecar-listen-addresses",
    "dapr.io/sidecar-liveness-probe-delay-seconds",
    "dapr.io/sidecar-liveness-probe-timeout-seconds",
    "dapr.io/sidecar-liveness-probe-period-seconds",
    "dapr.io/sidecar-liveness-probe-threshold",
    "dapr.io/sidecar-readiness-probe-delay-seconds",
    "dapr.io/sidecar-readiness-probe-timeout-seconds",
    "dapr.io/sidecar-readiness-probe-period-seconds",
    "dapr.io/sidecar-readiness-probe-threshold",
    "dapr.io/sidecar-image",
    "dapr.io/sidecar-seccomp-profile-type",
    "dapr.io/http-max-request-size",
    "dapr.io/max-body-size",
    "dapr.io/http-read-buffer-size",
    "dapr.io/read-buffer-size",
    "dapr.io/graceful-shutdown-seconds",
    "dapr.io/block-shutdown-duration",
    "dapr.io/enable-api-logging",
    "dapr.io/unix-domain-socket-path",
    "dapr.io/volume-mounts",
    "dapr.io/volume-mounts-rw",
    "dapr.io/disable-builtin-k8s-secret-store",
    "dapr.io/enable-app-health-check",
    "dapr.io/app-health-check-path",
    "dapr.io/app-health-probe-interval",
    "dapr.io/app-health-probe-timeout",
    "dapr.io/app-health-threshold",
    "dapr.io/placement-host-address",
    "dapr.io/scheduler-host-address",
    "dapr.io/pluggable-components",
    "dapr.io/pluggable-components-sockets-folder",
    "dapr.io/component-container",
    "dapr.io/inject-pluggable-components",
    "dapr.io/app-channel-address",
    "dapr.io/sentry-request-jwt-audiences",
    "dapr.io/sidecar-svc-annotations",
    "dapr.io/disable-init-endpoints",
}

EXPECTED_COMPONENTS = {
    (topology.PUBSUB, "pubsub.kafka"),
    (topology.LIVE_PUBSUB, "pubsub.kafka"),
    (topology.STATE_STORE, "state.postgresql"),
    (topology.SECRET_STORE, "secretstores.kubernetes"),
    (topology.REMINDER_SWEEP_BINDING, "bindings.cron"),
}


def _static(subdir: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((COMPONENTS_DIR / subdir).glob("*.yaml")):
        docs += load_yaml_docs(path)
    return docs


def _all_components(rendered: dict[str, Rendered]) -> list[tuple[str, dict[str, Any]]]:
    found = [(f"chart:{name}", d) for name, r in rendered.items() for d in r.kinds("Component")]
    found += [
        (f"dapr-components/{sub}", d)
        for sub in ("kubernetes", "local")
        for d in _static(sub)
        if d["kind"] == "Component"
    ]
    return found


def _metadata(component: dict[str, Any]) -> dict[str, Any]:
    return {m["name"]: m.get("value", m.get("secretKeyRef")) for m in component["spec"]["metadata"]}


def _scopes(field: str) -> dict[str, list[str]]:
    """Parse publishingScopes / subscriptionScopes: app1=t1,t2;app2=t3."""
    parsed: dict[str, list[str]] = {}
    for entry in field.split(";"):
        app, _, topics = entry.partition("=")
        parsed[app] = [t for t in topics.split(",") if t]
    return parsed


# --- the chart's copy of doable.platform.topology ------------------------------------------------------


def test_chart_topology_file_mirrors_doable_topology() -> None:
    chart_topology = yaml.safe_load((CHART / "files" / "topology.yaml").read_text())
    assert chart_topology["apiAppId"] == topology.API_APP_ID
    assert chart_topology["workerAppIds"] == dict(topology.WORKER_APP_IDS)
    assert chart_topology["components"] == {
        "pubsub": topology.PUBSUB,
        "livePubsub": topology.LIVE_PUBSUB,
        "stateStore": topology.STATE_STORE,
        "secretStore": topology.SECRET_STORE,
        "reminderSweepBinding": topology.REMINDER_SWEEP_BINDING,
    }
    assert tuple(chart_topology["topics"]) == topology.TOPICS
    assert tuple(chart_topology["liveTopics"]) == topology.LIVE_TOPICS
    assert chart_topology["deadLetterTopic"] == topology.DEAD_LETTER
    assert {k: tuple(v) for k, v in chart_topology["subscriptions"].items()} == dict(topology.SUBSCRIPTIONS)
    assert {k: tuple(v) for k, v in chart_topology["publishers"].items()} == dict(topology.PUBLISHERS)
    assert chart_topology["appPort"] == topology.APP_PORT


# --- documented fields ---------------------------------------------------------------------------


def test_components_use_only_documented_fields_and_values(rendered: dict[str, Rendered]) -> None:
    problems = []
    for where, component in _all_components(rendered):
        label = f"{where} {component['metadata']['name']}"
        try:
            jsonschema.validate(component | {"metadata": {"name": component["metadata"]["name"]}}, COMPONENT_SCHEMA)
        except jsonschema.ValidationError as error:
            problems.append(f"{label}: {error.message}")
            continue
        doc = DOCUMENTED.get(component["spec"]["type"])
        if doc is None:
            problems.append(f"{label}: type {component['spec']['type']} has no documented field list here")
            continue
        meta = _metadata(component)
        if component["spec"]["version"] != doc["version"]:
            problems.append(f"{label}: version {component['spec']['version']} (documented: {doc['version']})")
        if unknown := set(meta) - doc["fields"]:
            problems.append(f"{label}: undocumented fields {sorted(unknown)}")
        if missing := doc["required"] - set(meta):
            problems.append(f"{label}: missing required fields {sorted(missing)}")
        for key, allowed in doc["enums"].items():
            if key in meta and meta[key] not in allowed:
                problems.append(f"{label}: {key}={meta[key]!r} not one of {sorted(allowed)}")
    assert not problems, "\n".join(problems)


def test_configuration_and_resiliency_match_the_documented_schemas(rendered: dict[str, Rendered]) -> None:
    docs = [d for r in rendered.values() for d in r.kinds("Configuration", "Resiliency")]
    docs += [d for d in _static("kubernetes") + _static("local") if d["kind"] in ("Configuration", "Resiliency")]
    docs += load_yaml_docs(COMPONENTS_DIR / "local-config.yaml")
    assert len(docs) >= 2 * len(rendered) + 4
    for doc in docs:
        schema = CONFIGURATION_SCHEMA if doc["kind"] == "Configuration" else RESILIENCY_SCHEMA
        jsonschema.validate(doc, schema)


def test_kafka_has_no_fixed_consumer_group_and_a_dapr_sasl_mechanism(rendered: dict[str, Rendered]) -> None:
    for where, component in _all_components(rendered):
        if component["spec"]["type"] != "pubsub.kafka":
            continue
        meta = _metadata(component)
        assert "consumerGroup" not in meta, f"{where}: a shared consumer group would split the topics between apps"
        if component["metadata"]["name"] == topology.LIVE_PUBSUB:
            # One consumer group per pod, so every API replica gets every live update; a new pod
            # does not replay history. Dapr resolves {podName} at sidecar start-up:
            # https://docs.dapr.io/developing-applications/building-blocks/pubsub/howto-subscribe-statefulset/
            assert (meta["consumerID"], meta["initialOffset"]) == ("{podName}", "newest"), where
        else:
            assert "consumerID" not in meta, f"{where}: without it each app-id is one consumer group"
        if meta["authType"] == "password":
            assert meta["saslMechanism"] in {"SHA-256", "SHA-512"}, where
            assert isinstance(meta["saslPassword"], dict), f"{where}: the SASL password must be a secretKeyRef"
            assert meta.get("disableTls", "false") == "false", f"{where}: SASL must run over TLS"
        else:
            assert meta["authType"] == "none" and "saslMechanism" not in meta


def test_postgres_connection_string_comes_from_a_secret(rendered: dict[str, Rendered]) -> None:
    stores = [(w, c) for w, c in _all_components(rendered) if c["spec"]["type"] == "state.postgresql"]
    assert {w for w, _ in stores} == {f"chart:{n}" for n in rendered} | {
        "dapr-components/kubernetes",
        "dapr-components/local",
    }
    for where, component in stores:
        if where == "dapr-components/local":
            # The laptop's throwaway PostgreSQL (no secret store holds it): local only.
            assert "host=localhost" in _metadata(component)["connectionString"], where
        else:
            assert _metadata(component)["connectionString"] == {"name": "doable-postgres", "key": "connectionString"}, (
                where
            )


def test_every_state_store_is_postgresql_v1_with_the_same_metadata(rendered: dict[str, Rendered]) -> None:
    """Not state.redis (RedisJSON scripts with contentType, no first-write in transactions, no
    rollback): every set, the laptop's included, runs Doable on state.postgresql v1."""
    chart = next(c for c in rendered["default"].kinds("Component") if c["metadata"]["name"] == topology.STATE_STORE)
    expected = {k: v for k, v in _metadata(chart).items() if k != "connectionString"}
    for where, component in _all_components(rendered):
        if component["metadata"]["name"] != topology.STATE_STORE:
            continue
        assert (component["spec"]["type"], component["spec"]["version"]) == ("state.postgresql", "v1"), where
        meta = {k: v for k, v in _metadata(component).items() if k not in ("connectionString", "queryExecMode")}
        if where.startswith("chart:") or where == "dapr-components/kubernetes":
            assert meta.keys() == expected.keys(), where
        else:
            assert meta == expected, where


# --- topology: names, scopes, app-ids -----------------------------------------------------------


def test_chart_and_dapr_components_kubernetes_name_the_same_components(rendered: dict[str, Rendered]) -> None:
    static = {(d["metadata"]["name"], d["spec"]["type"]) for d in _static("kubernetes") if d["kind"] == "Component"}
    assert static == EXPECTED_COMPONENTS
    for name in ("default", "minikube", "oke", "oke-cloud-kafka"):
        chart = {(d["metadata"]["name"], d["spec"]["type"]) for d in rendered[name].kinds("Component")}
        assert chart == static, name
    local = {d["metadata"]["name"] for d in _static("local") if d["kind"] == "Component"}
    assert local == {n for n, _ in EXPECTED_COMPONENTS}
    # The static Kubernetes set is the chart's default rendering, minus Helm's labels and namespace.
    chart_default = {
        d["metadata"]["name"]: d for d in rendered["default"].kinds("Component", "Resiliency", "Configuration")
    }
    for doc in _static("kubernetes"):
        twin = chart_default[doc["metadata"]["name"]]
        assert doc.get("spec") == twin.get("spec"), doc["metadata"]["name"]
        assert doc.get("scopes") == twin.get("scopes"), doc["metadata"]["name"]


def _on(topics: tuple[str, ...], component: str) -> tuple[str, ...]:
    return tuple(t for t in topics if topology.pubsub_for(t) == component)


def test_component_scopes_follow_the_topology(rendered: dict[str, Rendered]) -> None:
    for where, component in _all_components(rendered):
        name, scopes = component["metadata"]["name"], component["scopes"]
        if name in (topology.PUBSUB, topology.LIVE_PUBSUB):
            # Each topic in exactly the component the code publishes and subscribes it through.
            subscribed = {a: _on(t, name) for a, t in topology.SUBSCRIPTIONS.items()}
            published = {a: _on(t, name) for a, t in topology.PUBLISHERS.items()}
            apps = {a for a, t in subscribed.items() if t} | {a for a, t in published.items() if t}
            assert set(scopes) == apps, where
            meta = _metadata(component)
            assert meta["allowedTopics"].split(",") == list(_on(topology.TOPICS, name)), where
            subscriptions = _scopes(meta["subscriptionScopes"])
            assert {a: tuple(t) for a, t in subscriptions.items()} == {a: subscribed.get(a, ()) for a in apps}, where
            publishing = _scopes(meta["publishingScopes"])
            for app in apps:
                expected = set(published.get(app, ()))
                if subscribed.get(app) and name == topology.PUBSUB:
                    expected.add(topology.DEAD_LETTER)  # the sidecar dead-letters failed deliveries itself
                assert set(publishing[app]) == expected, f"{where}: {app}"
        elif name in (topology.STATE_STORE, topology.SECRET_STORE):
            assert set(scopes) == set(topology.ALL_APP_IDS), where
        elif name == topology.REMINDER_SWEEP_BINDING:
            assert scopes == [topology.WORKER_APP_IDS["reminders"]], where
            schedule = _metadata(component)["schedule"]
            assert re.fullmatch(r"@every [0-9]+m", schedule), f"{where}: {schedule}"
            if where == "chart:oke" or where == "chart:oke-cloud-kafka":
                # Every sweep reads the state store: longer than Neon's 5-minute autosuspend.
                assert int(schedule.split()[1][:-1]) > 5, where
        else:
            pytest.fail(f"{where}: unexpected component {name}")


@pytest.mark.parametrize("variant", ["default", "minikube", "oke", "oke-cloud-kafka"])
def test_pod_annotations_use_the_topology_app_ids_and_port(rendered: dict[str, Rendered], variant: str) -> None:
    result = rendered[variant]
    config_names = {d["metadata"]["name"] for d in result.kinds("Configuration")}
    app_ids = []
    for deployment in result.kinds("Deployment"):
        annotations = pod_annotations(deployment)
        assert annotations["dapr.io/enabled"] == "true"
        assert annotations["dapr.io/app-port"] == str(topology.APP_PORT)
        assert annotations["dapr.io/config"] in config_names
        assert annotations["dapr.io/enable-app-health-check"] == "true"
        for key in ("cpu-request", "cpu-limit", "memory-request", "memory-limit"):
            assert annotations[f"dapr.io/sidecar-{key}"], key
        unknown = {k for k in annotations if k.startswith("dapr.io/")} - DAPR_ANNOTATIONS
        assert not unknown, f"not Dapr annotations: {sorted(unknown)}"
        app_ids.append(annotations["dapr.io/app-id"])
        # The app-id and the role agree: doable-api runs `serve`, doable-<x> runs `worker <x>`.
        args = pod_spec_args(deployment)
        if annotations["dapr.io/app-id"] == topology.API_APP_ID:
            assert args[0] == "serve"
        else:
            assert topology.WORKER_APP_IDS[args[1]] == annotations["dapr.io/app-id"]
        assert args[args.index("--port") + 1] == str(topology.APP_PORT)
    assert tuple(app_ids) == topology.ALL_APP_IDS
    for component in result.kinds("Component"):
        assert set(component["scopes"]) <= set(app_ids)


def pod_spec_args(deployment: dict[str, Any]) -> list[str]:
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


# --- Configuration and Resiliency content -------------------------------------------------------


def test_configuration_traces_meters_and_restricts_invocation(rendered: dict[str, Rendered]) -> None:
    config = rendered["oke-cloud-kafka"].one("Configuration", "doable-dapr")["spec"]
    assert config["tracing"]["otel"]["endpointAddress"].endswith(":4317")
    assert config["metrics"]["enabled"] is True
    acl = config["accessControl"]
    assert acl["defaultAction"] == "deny"
    # Exactly the callers the API's internal routes admit (doable.adapters.dapr.invocation.INTERNAL_CALLERS).
    assert {p["appId"] for p in acl["policies"]} == set().union(*INTERNAL_CALLERS.values())
    for policy in acl["policies"]:
        assert policy["defaultAction"] == "deny" and policy["namespace"] == "doable"
        assert all(op["action"] == "allow" and op["name"].startswith("/internal/") for op in policy["operations"])
    scopes = {s["storeName"]: s for s in config["secrets"]["scopes"]}
    assert scopes[topology.SECRET_STORE]["allowedSecrets"] == ["doable-secrets"]
    assert scopes[topology.SECRET_STORE]["defaultAccess"] == "deny"
    assert scopes["kubernetes"]["defaultAccess"] == "deny"


def test_local_secrets_example_has_the_keys_the_app_reads() -> None:
    import json

    example = json.loads((COMPONENTS_DIR / "local" / "secrets.example.json").read_text())
    assert set(example["doable-secrets"]) == {"jwt-secret", "openai-api-key"}
    store = next(d for d in _static("local") if d["metadata"]["name"] == topology.SECRET_STORE)
    assert _metadata(store)["secretsFile"] == "dapr-components/local/secrets.json"


def test_readme_shows_one_dapr_run_per_app_id() -> None:
    readme = (COMPONENTS_DIR / "README.md").read_text()
    assert "dapr run --app-id doable-api --app-port 8000 --resources-path dapr-components/local" in readme
    for port, (worker, app_id) in enumerate(topology.WORKER_APP_IDS.items(), start=8001):
        assert f"dapr run --app-id {app_id} --app-port {port} " in readme
        assert f"doable worker {worker} --port {port}" in readme
