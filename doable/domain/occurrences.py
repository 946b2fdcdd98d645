"""Per-occurrence history of a repeating series: what became of each scheduled date.

A record is written in the same unit of work as the change it describes: completing an
occurrence ("completed"), skipping it ("skipped"), moving it ("rescheduled", with where to), and
the scheduled dates a late completion or a skip passed over ("missed").
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class OccurrenceStatus(StrEnum):
    COMPLETED = "completed"
    SKIPPED = "skipped"
    MISSED = "missed"
    RESCHEDULED = "rescheduled"


class OccurrenceRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    user_id: str
    series_id: str
    # The occurrence's scheduled due instant (for an all-day series also its local date).
    due_at: datetime
    due_date: date | None = None
    status: OccurrenceStatus
    # The task that stood for this occurrence (for "missed": the one whose completion or skip passed it).
    task_id: int
    at: datetime
    # "rescheduled": where the occurrence was moved to.
    moved_to: datetime | None = None
    moved_to_date: date | None = None

    @classmethod
    def new(
        cls,
        *,
        user_id: str,
        series_id: str,
        due_at: datetime,
        due_date: date | None,
        status: OccurrenceStatus,
        task_id: int,
        at: datetime,
        moved_to: datetime | None = None,
        moved_to_date: date | None = None,
    ) -> OccurrenceRecord:
        return cls(
            id=uuid.uuid4().hex,
            user_id=user_id,
            series_id=series_id,
            due_at=due_at,
            due_date=due_date,
            status=status,
            task_id=task_id,
            at=at,
            moved_to=moved_to,
            moved_to_date=moved_to_date,
        )
