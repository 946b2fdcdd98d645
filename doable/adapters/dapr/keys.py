"""The Dapr state keys of tasks, profiles and the outbox, and how task ids map onto them.

Key layout (the store keeps keys per app-id unless keyPrefix says otherwise):

    user:{uid}:meta          {"next_id", "count", "outbox_head", "outbox_tail"}   every write touches it
    user:{uid}:profile       the Profile
    tasks:{uid}:{n}          bucket n: {"tasks": {"<id>": Task}, "r": {"<id>": rev}}, ids (n*64, (n+1)*64]
    tasks-index:{uid}:{n}    list projection chunk n: {"v": rev, "e": {"<id>": [keys]}}, ids (n*512, (n+1)*512]
    outbox:{uid}:{seq}       one TaskEvent, seq in [outbox_tail, outbox_head)
    outbox-dirty:{shard}     {"users": [...]} users with unpublished events (16 shards)
    occ:{uid}:{series}       {"records": [...]} a series' per-occurrence history (latest 500)
    token:{uid}:{token}      an undo record or a pending bulk confirmation (with a TTL)

({uid} is percent-encoded: Dapr reserves "||" in keys.)

Why buckets, a list projection and a meta document: doable/adapters/dapr/state.py.
"""

from __future__ import annotations

import zlib
from datetime import datetime
from urllib.parse import quote

from doable.domain.query import micros

BUCKET = 64
# Tasks per list-projection chunk: a write rewrites one chunk (~512 x 130 bytes), a cold list reads
# N/512 of them (docs/read-paths.md).
INDEX_CHUNK = 512
# The projection's format; a meta without it predates the projection (listed from the buckets).
INDEX_FORMAT = 1
DIRTY_SHARDS = 16
# A series' occurrence history keeps its latest records (one document per series).
OCCURRENCES_KEPT = 500


def _uid(uid: str) -> str:
    # Dapr reserves "||" (its app-id prefix separator) and ":" separates our key parts.
    return quote(uid, safe="")


def meta_key(uid: str) -> str:
    return f"user:{_uid(uid)}:meta"


def profile_key(uid: str) -> str:
    return f"user:{_uid(uid)}:profile"


def bucket_key(uid: str, n: int) -> str:
    return f"tasks:{_uid(uid)}:{n}"


def index_key(uid: str, n: int) -> str:
    return f"tasks-index:{_uid(uid)}:{n}"


def outbox_key(uid: str, seq: int) -> str:
    return f"outbox:{_uid(uid)}:{seq}"


def series_key(uid: str, series_id: str, after: datetime) -> str:
    return f"series:{_uid(uid)}:{quote(series_id, safe='')}:{micros(after)}"


def idempotency_key(uid: str, key: str) -> str:
    return f"idem:{_uid(uid)}:{quote(key, safe='')}"


def occurrences_key(uid: str, series_id: str) -> str:
    return f"occ:{_uid(uid)}:{quote(series_id, safe='')}"


def token_key(uid: str, token: str) -> str:
    return f"token:{_uid(uid)}:{quote(token, safe='')}"


def dirty_shard_key(shard: int) -> str:
    return f"outbox-dirty:{shard}"


def dirty_key(uid: str) -> str:
    return dirty_shard_key(zlib.crc32(uid.encode()) % DIRTY_SHARDS)


def bucket_of(task_id: int) -> int:
    return (task_id - 1) // BUCKET


def chunk_of(task_id: int) -> int:
    return (task_id - 1) // INDEX_CHUNK
