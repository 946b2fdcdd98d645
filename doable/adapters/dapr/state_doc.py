"""A state document as a Dapr unit of work holds it (doable/adapters/dapr/state.py)."""

from __future__ import annotations

from typing import Any

from doable.adapters.dapr.keys import INDEX_FORMAT
from doable.adapters.dapr.operations import StateItem, Upsert


class StateDoc:
    """A state document read in this unit of work: its value, the ETag it was read with, and
    whether it changed (so commit writes only what changed, each guarded by its ETag)."""

    def __init__(self, key: str, item: StateItem | None, default: dict[str, Any]) -> None:
        self.key = key
        self.etag = item.etag if item else None
        self.exists = item is not None
        self.value: dict[str, Any] = dict(item.value) if item and isinstance(item.value, dict) else default
        self.dirty = False
        # Delete at commit (guarded by the ETag it was read with); a later write wins over it.
        self.deleted = False
        self.ttl_seconds: int | None = None

    def upsert(self) -> Upsert:
        # An absent key is created with first-write and no ETag: create-only, so two
        # concurrent creators cannot both succeed.
        return Upsert(self.key, self.value, etag=self.etag, first_write=True, ttl_seconds=self.ttl_seconds)

    def delete(self) -> None:
        self.deleted = True
        self.dirty = False


def meta_default() -> dict[str, Any]:
    # A new user starts with an (empty) list projection; an existing meta without "ixv" predates it.
    return {"next_id": 0, "count": 0, "outbox_head": 0, "outbox_tail": 0, "ixv": INDEX_FORMAT, "rev": 0, "ix": {}}
