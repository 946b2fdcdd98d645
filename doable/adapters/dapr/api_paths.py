"""Where a daprd of a given version serves the APIs whose path moved between the supported
runtimes (1.16 to 1.18): the Jobs API and bulk publish (doable/adapters/dapr/client.py)."""

from __future__ import annotations

import re

JOBS_STABLE = "/v1.0/jobs"
JOBS_ALPHA = "/v1.0-alpha1/jobs"
# The first runtime that serves the stable Jobs API path.
_STABLE_JOBS_SINCE = (1, 18)
_VERSION = re.compile(r"^v?(\d+)\.(\d+)")


def jobs_path_for(runtime_version: str | None) -> str:
    """The Jobs API path a daprd of `runtime_version` serves (e.g. "1.17.13" -> the alpha path).

    An unknown version (a development build says "edge") gets the stable path; a wrong guess
    is corrected on the first call (see `DaprClient._jobs_request`)."""
    found = _VERSION.match(runtime_version or "")
    if found and (int(found.group(1)), int(found.group(2))) < _STABLE_JOBS_SINCE:
        return JOBS_ALPHA
    return JOBS_STABLE


BULK_PUBLISH_STABLE = "/v1.0/publish/bulk"
BULK_PUBLISH_ALPHA = "/v1.0-alpha1/publish/bulk"
# The first runtime that also serves bulk publish under /v1.0 (every supported one serves the alpha path).
_STABLE_BULK_PUBLISH_SINCE = (1, 18, 3)
_FULL_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def bulk_publish_path_for(runtime_version: str | None) -> str:
    """The bulk publish path to use with a daprd of `runtime_version`: `/v1.0/publish/bulk` from
    1.18.3 (`pkg/api/http/http.go` constructPubSubEndpoints), the alpha path before it and for an
    unknown version (every supported runtime serves that one)."""
    found = _FULL_VERSION.match(runtime_version or "")
    if found and tuple(int(g) for g in found.groups()) >= _STABLE_BULK_PUBLISH_SINCE:
        return BULK_PUBLISH_STABLE
    return BULK_PUBLISH_ALPHA
