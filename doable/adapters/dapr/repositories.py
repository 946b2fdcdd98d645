"""The repositories of a Dapr unit of work beside its tasks: profiles, the outbox's new events,
series links, idempotency keys, occurrence history and action tokens (one document each)."""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import TYPE_CHECKING

from doable.adapters.dapr.keys import (
    OCCURRENCES_KEPT,
    idempotency_key,
    occurrences_key,
    profile_key,
    series_key,
    token_key,
)
from doable.adapters.dapr.state_doc import StateDoc
from doable.domain.errors import Conflict
from doable.domain.events import TaskEvent
from doable.domain.occurrences import OccurrenceRecord
from doable.domain.profile import Profile
from doable.ports import ActionToken, StoredResult

if TYPE_CHECKING:
    from doable.adapters.dapr.state import DaprUnitOfWork


class DaprProfiles:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str) -> Profile | None:
        await self._uow.prefetch(user_id)
        doc = await self._uow.doc(profile_key(user_id), {})
        # A profile saved earlier in this unit of work is read back (read-your-writes), as SQL does.
        return Profile.model_validate(doc.value) if (doc.exists or doc.dirty) and not doc.deleted else None

    async def save(self, profile: Profile) -> None:
        await self._uow.prefetch(profile.user_id)
        doc = await self._uow.doc(profile_key(profile.user_id), {})
        doc.value = profile.model_dump(mode="json")
        doc.dirty = True


class DaprEvents:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def add(self, event: TaskEvent) -> None:
        self._uow.new_events.append((event.user_id, event))


class DaprSeriesLinks:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def successor(self, user_id: str, series_id: str, after: datetime) -> int | None:
        doc = await self._uow.doc(series_key(user_id, series_id, after), {})
        return int(doc.value["task_id"]) if (doc.exists or doc.dirty) and not doc.deleted else None

    async def link(self, user_id: str, series_id: str, after: datetime, task_id: int, at: datetime) -> None:
        doc = await self._uow.doc(series_key(user_id, series_id, after), {})
        if (doc.exists or doc.dirty) and not doc.deleted:
            raise Conflict(f"series {series_id} already continued after this occurrence")
        doc.deleted = False
        # Created without an ETag (create-only): a concurrent creator makes the commit fail.
        doc.value = {"task_id": task_id, "at": at.isoformat()}
        doc.dirty = True

    async def unlink(self, user_id: str, series_id: str, after: datetime) -> None:
        doc = await self._uow.doc(series_key(user_id, series_id, after), {})
        if doc.exists or doc.dirty:
            doc.delete()


class DaprIdempotencyKeys:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str, key: str) -> StoredResult | None:
        # Usually a write's first touch of the user: its key comes in the same bulk read.
        await self._uow.prefetch(user_id, {idempotency_key(user_id, key): {}})
        doc = await self._uow.doc(idempotency_key(user_id, key), {})
        if not doc.exists:
            return None
        v = doc.value
        return StoredResult(
            request_hash=v["request_hash"], created_at=datetime.fromisoformat(v["created_at"]), result=v["result"]
        )

    async def put(self, user_id: str, key: str, stored: StoredResult) -> None:
        doc = await self._uow.doc(idempotency_key(user_id, key), {})
        if doc.exists:
            raise Conflict("the same idempotency key is in use by a concurrent call")
        doc.value = {
            "request_hash": stored.request_hash,
            "created_at": stored.created_at.isoformat(),
            "result": stored.result,
        }
        doc.dirty = True

    async def forget(self, user_id: str, key: str) -> None:
        doc = await self._uow.doc(idempotency_key(user_id, key), {})
        # Keep the ETag: a following put overwrites the expired entry only if nobody else did.
        doc.exists = False
        doc.value = {}


class DaprOccurrenceLog:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def _doc(self, user_id: str, series_id: str) -> StateDoc:
        return await self._uow.doc(occurrences_key(user_id, series_id), {"records": []})

    async def add(self, records: list[OccurrenceRecord]) -> None:
        by_series: dict[tuple[str, str], list[OccurrenceRecord]] = {}
        for r in records:
            by_series.setdefault((r.user_id, r.series_id), []).append(r)
        for (uid, series_id), new in by_series.items():
            doc = await self._doc(uid, series_id)
            kept = [*doc.value["records"], *(r.model_dump(mode="json") for r in new)]
            kept.sort(key=lambda r: (r["due_at"], r["at"]))
            doc.value = {"records": kept[-OCCURRENCES_KEPT:]}
            doc.dirty = True

    async def list(self, user_id: str, series_id: str, limit: int = 50) -> list[OccurrenceRecord]:
        records = [OccurrenceRecord.model_validate(r) for r in (await self._doc(user_id, series_id)).value["records"]]
        records.sort(key=lambda r: (r.due_at, r.at), reverse=True)
        return records[:limit]

    async def remove(self, user_id: str, series_id: str, ids: builtins.list[str]) -> None:
        doc = await self._doc(user_id, series_id)
        kept = [r for r in doc.value["records"] if r["id"] not in set(ids)]
        if len(kept) != len(doc.value["records"]):
            doc.value = {"records": kept}
            doc.dirty = True


class DaprActionTokens:
    def __init__(self, uow: DaprUnitOfWork) -> None:
        self._uow = uow

    async def get(self, user_id: str, token: str) -> ActionToken | None:
        doc = await self._uow.doc(token_key(user_id, token), {})
        if not doc.exists or doc.deleted or "kind" not in doc.value:
            return None
        v = doc.value
        return ActionToken(
            user_id=user_id,
            token=token,
            kind=v["kind"],
            created_at=datetime.fromisoformat(v["created_at"]),
            expires_at=datetime.fromisoformat(v["expires_at"]),
            data=v["data"],
        )

    async def put(self, token: ActionToken) -> None:
        # A new token is random (doable.usecases.undo.new_token): not read, created create-only at commit.
        doc = self._uow.created(token_key(token.user_id, token.token))
        if doc.exists:
            raise Conflict("the token is already in use")
        doc.value = {
            "kind": token.kind,
            "created_at": token.created_at.isoformat(),
            "expires_at": token.expires_at.isoformat(),
            "data": token.data,
        }
        doc.dirty = True
        # The store forgets it a little after it expires (the service checks the expiry itself).
        doc.ttl_seconds = max(60, int((token.expires_at - token.created_at).total_seconds()) + 3600)

    async def remove(self, user_id: str, token: str) -> None:
        (await self._uow.doc(token_key(user_id, token), {})).delete()
