"""Per-user preferences."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

DEFAULT_TIMEZONE = "UTC"


class Profile(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    timezone: str = DEFAULT_TIMEZONE
    updated_at: datetime | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
