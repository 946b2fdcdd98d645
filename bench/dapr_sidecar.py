"""The Dapr sidecar double (tests/dapr_double, over PostgreSQL) as a process of its own on a port,
as daprd would be: `python -m bench.dapr_sidecar SCHEMA PORT`. Prints READY when it answers.
The schema is kept on exit (the bench caches its state between runs)."""

from __future__ import annotations

import asyncio
import signal
import sys

from bench.datagen import PG_DSN
from doable.platform.topology import API_APP_ID
from tests.dapr_double import DaprDouble


async def main(schema: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with DaprDouble(app_id=API_APP_ID, dsn=PG_DSN, schema=schema, drop_schema_on_close=False) as double:
        async with double.serve(port) as url:
            print(f"READY {url}", flush=True)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
