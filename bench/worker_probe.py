"""Which modules a worker process loads: `python -m bench.worker_probe` builds every worker's app the
way `doable worker NAME` does (doable.cli, doable.bootstrap.workers.build_worker_app, the Dapr wiring when
present) and prints JSON: the chat-stack modules it imported (must be none) and its RSS."""

from __future__ import annotations

import importlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

FORBIDDEN = ("agents", "chatkit", "openai", "agent")


class _Null:
    async def publish(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def schedule(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def cancel(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def create_next(self, *args: Any, **kwargs: Any) -> None:
        return None


def main() -> None:
    import psutil

    importlib.import_module("doable.cli")
    from doable.bootstrap.workers import WorkerTransport, build_worker_app
    from doable.platform.settings import Settings
    from doable.platform.topology import WORKER_APP_IDS

    try:
        importlib.import_module("doable.bootstrap.dapr")
        wiring = True
    except ImportError:
        wiring = False
    settings = Settings(data_dir=Path(tempfile.mkdtemp()), runtime="dapr")
    null = _Null()
    for name in WORKER_APP_IDS:
        build_worker_app(settings, name, WorkerTransport(publisher=null, jobs=null, tasks=null, occurrences=null))  # type: ignore[arg-type]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)
    print(json.dumps({
        "workers": sorted(WORKER_APP_IDS), "dapr_wiring_imported": wiring, "forbidden_loaded": loaded,
        "modules": len(sys.modules), "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
