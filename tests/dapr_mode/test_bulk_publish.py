"""The Dapr outbox relay publishes each user's pending events with Dapr's bulk publish (issue 16):
one call per topic for the user's chunk, on the path the sidecar's version serves; a partly failed
bulk publish leaves the user's tail at the first failed entry, so nothing is lost and the user's
events are published again, in order, from there."""

from __future__ import annotations

from doable.adapters.dapr.api_paths import BULK_PUBLISH_ALPHA, BULK_PUBLISH_STABLE, bulk_publish_path_for
from doable.bootstrap import build
from doable.platform import topology
from doable.platform.settings import Settings
from doable.usecases.inputs import NewTask
from tests.dapr_double import DaprDouble


def test_the_bulk_publish_path_follows_the_runtime_version() -> None:
    # /v1.0/publish/bulk exists from 1.18.3; the alpha path is served by every supported version.
    assert bulk_publish_path_for("1.16.19") == BULK_PUBLISH_ALPHA
    assert bulk_publish_path_for("1.17.13") == BULK_PUBLISH_ALPHA
    assert bulk_publish_path_for("1.18.2") == BULK_PUBLISH_ALPHA
    assert bulk_publish_path_for("1.18.3") == BULK_PUBLISH_STABLE
    assert bulk_publish_path_for("edge") == BULK_PUBLISH_ALPHA
    assert bulk_publish_path_for(None) == BULK_PUBLISH_ALPHA


async def test_a_partly_failed_bulk_publish_loses_nothing_and_republishes_in_order(
    dapr_settings: Settings, sidecar_url: str, double: DaprDouble
) -> None:
    settings = dapr_settings.model_copy(update={"dapr_http_endpoint": sidecar_url})
    rt = await build(settings)  # its relay is not started: the test drains explicitly
    try:
        assert rt.dapr is not None
        for title in ("one", "two", "three"):
            await rt.service.add("bulk-user", NewTask(title=title))
        # The producer rejects the second entry of the bulk publish, beyond the sidecar's own
        # retries (the other entries are stored: Kafka takes each message on its own).
        double.fail_bulk_publish_entries("1", times=100)
        await rt.dapr.outbox.drain()  # the user counts as failed this round
        assert await rt.outbox.depth() == 2  # "one" is done; the tail stops at "two"
        double.fail_bulk_publish_entries("1", times=0)
        assert await rt.dapr.outbox.drain() == 2  # "two" and "three" again, in order
        assert await rt.outbox.depth() == 0
    finally:
        await rt.aclose()
    events = [e for e in double.published(topology.TASK_EVENTS) if e["data"]["user_id"] == "bulk-user"]
    titles = [e["data"]["task_data"]["title"] for e in events]
    # One bulk call per round: "three" went through the first time too (at least once is the
    # contract); from the failed entry on, the user's events are published again in order.
    assert titles == ["one", "three", "two", "three"]
    updates = [e["data"]["task_data"]["title"] for e in double.published(topology.TASK_UPDATES)]
    assert updates[-2:] == ["two", "three"]
