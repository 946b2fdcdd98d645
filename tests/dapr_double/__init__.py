"""A Dapr sidecar double for tests: the Dapr HTTP API v1.0 subset Doable uses, over real PostgreSQL.

Test tool only, never a runtime. Typical use::

    async with DaprDouble(app_id="todo-api", dsn=DSN, schema="dd_" + uuid4().hex[:12],
                          app=fastapi_app, secrets={"kubernetes": {"jwt": {"key": "k"}}},
                          clock=ManualClock()) as double:
        await double.register_app("reminder-worker", asgi_app=worker_app)
        async with double.serve() as sidecar_url:        # a real port, like localhost:3500
            ...                                          # the app calls sidecar_url
        await double.wait_idle()                         # every event delivered
        double.clock.advance(60); await double.tick()    # fire due jobs

See `DaprDouble` for the full surface and each module's docstring for the Dapr
documentation it follows.
"""

from .broker import BrokerMessage
from .clock import Clock, ManualClock, SystemClock
from .delivery import DeliveryAttempt
from .double import DaprDouble
from .errors import DaprError
from .jobs import Job, JobTrigger

__all__ = [
    "BrokerMessage",
    "Clock",
    "DaprDouble",
    "DaprError",
    "DeliveryAttempt",
    "Job",
    "JobTrigger",
    "ManualClock",
    "SystemClock",
]
