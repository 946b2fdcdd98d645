"""The undo record a change leaves: what its inverse needs, written in the change's own unit of work."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from doable.domain.occurrences import OccurrenceRecord
from doable.domain.profile import Profile
from doable.domain.task import Task
from doable.ports import ActionToken, UnitOfWork

UNDO_WINDOW = timedelta(hours=24)
KIND = "undo"


@dataclass
class UndoLog:
    """What one change did, step by step, as its inverse needs it."""

    label: str
    steps: list[dict[str, Any]] = field(default_factory=list)

    def task(self, before: Task | None, after: Task | None) -> None:
        """`before` became `after` (None: did not exist / no longer exists)."""
        ref = after or before
        assert ref is not None
        self.steps.append(
            {
                "kind": "task",
                "task_id": ref.task_id,
                "before": before.model_dump(mode="json") if before else None,
                "after": after.version if after else None,
            }
        )

    def records_added(self, records: list[OccurrenceRecord]) -> None:
        if records:
            self.steps.append({"kind": "records_added", "records": [r.model_dump(mode="json") for r in records]})

    def records_removed(self, records: list[OccurrenceRecord]) -> None:
        if records:
            self.steps.append({"kind": "records_removed", "records": [r.model_dump(mode="json") for r in records]})

    def profile(self, before: Profile | None, after: Profile) -> None:
        self.steps.append(
            {
                "kind": "profile",
                "before": before.model_dump(mode="json") if before else None,
                "after": after.model_dump(mode="json"),
            }
        )

    @property
    def task_ids(self) -> list[int]:
        return [s["task_id"] for s in self.steps if s["kind"] == "task"]


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(12)


async def save(uow: UnitOfWork, user_id: str, log: UndoLog, now: datetime) -> str | None:
    """Store `log` as an undo record in `uow`; its token (None when the change changed nothing)."""
    if not log.steps:
        return None
    token = new_token("u-")
    data = {"label": log.label, "steps": log.steps}
    await uow.tokens.put(ActionToken(user_id, token, KIND, now, now + UNDO_WINDOW, data))
    return token
