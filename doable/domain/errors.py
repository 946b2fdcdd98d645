"""Domain errors. Raised once here, translated once per transport.

| error            | HTTP | MCP tool error prefix | subscription / job |
| InvalidArgument  | 422  | invalid_argument       | DROP               |
| NotFound         | 404  | not_found              | DROP               |
| Conflict         | 409  | conflict               | RETRY              |
| Unavailable      | 503  | unavailable            | RETRY              |
"""

from __future__ import annotations


class DoableError(Exception):
    """Base of every error a user may see. `code` is stable and machine-readable."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(DoableError):
    """Input breaks a rule; names the field and the rule so a model can fix it in one step."""

    code = "invalid_argument"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class NotFound(DoableError):
    """The thing does not exist for this user (another user's task is simply not found)."""

    code = "not_found"


class Conflict(DoableError):
    """A concurrent change won; the caller may retry."""

    code = "conflict"


class Unavailable(DoableError):
    """A backend (database, sidecar) cannot be reached right now."""

    code = "unavailable"


class LimitExceeded(InvalidArgument):
    """A configured quota (tasks per user, ...) would be exceeded."""


class Stale(DoableError):
    """What a token (undo, bulk confirmation) was issued for has changed since. Unlike Conflict,
    retrying the same call cannot succeed: the caller must look again."""

    code = "conflict"
