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

With the manifests that ship (`manifests.render_chart()`), a version (`dapr_version="1.17"`)
and fast resiliency time::

    DaprDouble(..., manifests=render_chart(), dapr_version="1.17", resiliency_timer=SystemTimer(0.01))

See `DaprDouble` for the full surface and each module's docstring for the Dapr
documentation and daprd source it follows (versions.py, manifests.py, resiliency.py, acl.py).
"""

from .broker import BrokerMessage
from .clock import Clock, ManualClock, SystemClock
from .delivery import DeliveryAttempt
from .double import DaprDouble
from .errors import DaprError
from .jobs import Job, JobTrigger
from .manifests import Component, Configuration, Manifests, render_chart
from .resiliency import Policy, Resiliency, SystemTimer, VirtualTimer
from .versions import SUPPORTED_TAGS, DaprVersion

__all__ = [
    "SUPPORTED_TAGS",
    "BrokerMessage",
    "Clock",
    "Component",
    "Configuration",
    "DaprDouble",
    "DaprError",
    "DaprVersion",
    "DeliveryAttempt",
    "Job",
    "JobTrigger",
    "Manifests",
    "ManualClock",
    "Policy",
    "Resiliency",
    "SystemClock",
    "SystemTimer",
    "VirtualTimer",
    "render_chart",
]
