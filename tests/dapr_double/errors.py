"""Dapr-shaped error responses.

Dapr answers API errors with a JSON body `{"errorCode": ..., "message": ...}`; the
newer "richer" errors add a `details` list holding a google.rpc.ErrorInfo with the
reason code (docs: https://docs.dapr.io/reference/api/error_codes/ and
https://docs.dapr.io/reference/errors/).
Codes and statuses below are taken from dapr/dapr `pkg/messages/errorcodes` and
`pkg/api/errors` where the API reference is silent.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse, Response

ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


class DaprError(Exception):
    """An API error rendered the way daprd renders it."""

    def __init__(
        self,
        status: int,
        error_code: str,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"errorCode": self.error_code, "message": self.message}
        if self.reason is not None:
            info: dict[str, object] = {"@type": ERROR_INFO_TYPE, "reason": self.reason, "domain": "dapr.io"}
            if self.metadata:
                info["metadata"] = self.metadata
            body["details"] = [info]
        return body

    def to_response(self) -> Response:
        return JSONResponse(self.body(), status_code=self.status)


def malformed_request(detail: str) -> DaprError:
    """400 ERR_MALFORMED_REQUEST, as daprd answers an undecodable body."""
    return DaprError(400, "ERR_MALFORMED_REQUEST", f"failed deserializing HTTP body: {detail}")
