"""The messaging glue against a real Redis and a real store (SQLite, and PostgreSQL when given)."""

import asyncio
from datetime import date

import pytest
import redis.asyncio as aioredis
from sqlmodel import func, select

from services.housing.handlers import Housing, seed_places
from services.housing.settings import HousingSettings
from services.housing.store import TABLES as HOUSING_TABLES
from services.housing.store import Stay, WaitlistEntry
from shared.events import Envelope, dead_letter_stream, stream_name
from shared.events.codes import Decision, PlaceKind, Track
from shared.events.intake import RequestAssessed
from shared.messaging import InboxEntry, ServiceRuntime, faults
from tests.conftest import store_kinds

pytestmark = pytest.mark.parametrize("store", store_kinds())


async def wait_until(predicate, timeout=15.0, every=0.05):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(every)
    return False


def accommodate(person_ref: str) -> Envelope:
    return Envelope.wrap(RequestAssessed(request_ref=f"R-{person_ref}", person_ref=person_ref,
                                         decision=Decision.accommodate, track=Track.youth,
                                         place_kind=PlaceKind.emergency))


@pytest.fixture
async def housing(store, make_database, redis_url, namespace):
    settings = HousingSettings(redis_url=redis_url, database_url=make_database(store, "housing"), namespace=namespace,
                               consumer_name="housing-test", reclaim_idle_ms=300, max_deliveries=3,
                               poll_interval_ms=50)
    domain = Housing(postgres=store == "postgres")
    runtime = ServiceRuntime(settings, tables=HOUSING_TABLES, handlers=domain.handlers())
    runtime.startup.append(lambda: seed_places(runtime.sessions))
    await runtime.start()
    yield runtime
    await runtime.stop()


async def publish(runtime: ServiceRuntime, envelope: Envelope) -> None:
    await runtime.broker.publish(envelope.model_dump(mode="json"), stream=stream_name(runtime.settings.namespace, "intake"))


async def count(runtime, model, *where) -> int:
    async with runtime.sessions() as session:
        return (await session.exec(select(func.count()).select_from(model).where(*where))).one()


async def test_an_event_delivered_twice_has_one_effect(housing):
    event = accommodate("P-twice")
    await publish(housing, event)
    await publish(housing, event)
    assert await wait_until(lambda: _inbox_has(housing, event.event_id))
    assert await wait_until(lambda: _counted_duplicate(housing))
    assert await count(housing, Stay, Stay.person_ref == "P-twice") == 1


async def _counted_duplicate(runtime):
    return runtime.consumer.stats["duplicates"] >= 1


async def _inbox_has(runtime, event_id):
    return await count(runtime, InboxEntry, InboxEntry.event_id == event_id) == 1


async def test_a_malformed_entry_is_dead_lettered_and_the_stream_keeps_flowing(housing, redis_url):
    client = aioredis.from_url(redis_url)
    stream = stream_name(housing.settings.namespace, "intake")
    await client.xadd(stream, {"garbage": "not an event"})
    broken = accommodate("P-broken").model_dump(mode="json")
    broken["payload"]["decision"] = "teleport"
    await housing.broker.publish(broken, stream=stream)
    await publish(housing, accommodate("P-after"))

    assert await wait_until(lambda: _stay_exists(housing, "P-after"))
    dead = await client.xrange(dead_letter_stream(housing.settings.namespace))
    reasons = [fields[b"reason"].decode() for _id, fields in dead]
    assert any("payload" in r or "decision" in r for r in reasons), reasons
    assert len(dead) == 2
    assert await count(housing, Stay, Stay.person_ref == "P-broken") == 0
    assert await wait_until(lambda: _nothing_pending(client, stream))
    await client.aclose()


async def _nothing_pending(client, stream):
    # The stay shows at commit; the ack follows it.
    return (await client.xpending(stream, "housing"))["pending"] == 0


async def _stay_exists(runtime, person_ref):
    return await count(runtime, Stay, Stay.person_ref == person_ref) == 1


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_max_deliveries(housing, redis_url, monkeypatch):
    monkeypatch.setitem(faults.SPEC, "poison", "P-poison")
    poison = accommodate("P-poison")
    await publish(housing, poison)
    await publish(housing, accommodate("P-healthy"))
    client = aioredis.from_url(redis_url)
    dlq = dead_letter_stream(housing.settings.namespace)

    assert await wait_until(lambda: _stay_exists(housing, "P-healthy"))
    assert await wait_until(lambda: _len(client, dlq, 1), timeout=20)
    (_id, fields), = await client.xrange(dlq)
    assert fields[b"event_id"].decode() == poison.event_id
    assert int(fields[b"deliveries"]) > housing.consumer.max_deliveries
    assert await count(housing, Stay, Stay.person_ref == "P-poison") == 0
    assert (await client.xpending(stream_name(housing.settings.namespace, "intake"), "housing"))["pending"] == 0
    await client.aclose()


async def _len(client, stream, n):
    return await client.xlen(stream) == n


async def test_a_failed_event_is_redelivered_and_applied_once_the_fault_is_gone(housing, monkeypatch):
    monkeypatch.setitem(faults.SPEC, "handler", "raise")
    await publish(housing, accommodate("P-later"))
    await asyncio.sleep(0.6)
    assert await count(housing, Stay, Stay.person_ref == "P-later") == 0
    monkeypatch.delitem(faults.SPEC, "handler")
    assert await wait_until(lambda: _stay_exists(housing, "P-later"))


async def test_events_published_before_the_service_ever_started_are_not_missed(
        store, make_database, redis_url, namespace):
    settings = HousingSettings(redis_url=redis_url, database_url=make_database(store, "early"), namespace=namespace,
                               consumer_name="housing-early", poll_interval_ms=50)
    client = aioredis.from_url(redis_url)
    runtime = ServiceRuntime(settings, tables=HOUSING_TABLES, handlers=Housing(postgres=store == "postgres").handlers())
    runtime.startup.append(lambda: seed_places(runtime.sessions))
    # published through a bare broker before any group exists
    await runtime.broker.connect()
    await publish(runtime, accommodate("P-early"))
    await runtime.start()
    try:
        assert await wait_until(lambda: _stay_exists(runtime, "P-early"))
        async with runtime.sessions() as session:
            stay = (await session.exec(select(Stay).where(Stay.person_ref == "P-early"))).one()
        assert stay.planned_end > stay.starts_on >= date(2026, 1, 1)
    finally:
        await runtime.stop()
        await client.aclose()


async def test_no_place_free_puts_the_person_on_the_waiting_list(housing):
    async with housing.sessions() as session:
        free = (await session.exec(select(func.count()).select_from(__import__("services.housing.store", fromlist=["Place"]).Place)
                                   .where(__import__("services.housing.store", fromlist=["Place"]).Place.kind == "emergency"))).one()
    for i in range(free + 2):
        await publish(housing, accommodate(f"P-many{i}"))
    assert await wait_until(lambda: _waiting(housing, 2))
    assert await count(housing, Stay) == free


async def _waiting(runtime, n):
    return await count(runtime, WaitlistEntry) == n


async def test_other_schema_versions_are_read_when_compatible_and_dead_lettered_with_a_reason_when_not(
        housing, redis_url):
    newer = accommodate("P-newer").model_dump(mode="json")
    newer["schema_version"] = 2
    newer["payload"]["field_from_the_future"] = {"nested": True}
    incompatible = accommodate("P-incompatible").model_dump(mode="json")
    incompatible["schema_version"] = 3
    del incompatible["payload"]["person_ref"]
    stream = stream_name(housing.settings.namespace, "intake")
    await housing.broker.publish(newer, stream=stream)
    await housing.broker.publish(incompatible, stream=stream)
    await publish(housing, accommodate("P-after-versions"))

    assert await wait_until(lambda: _stay_exists(housing, "P-after-versions"))
    assert await count(housing, Stay, Stay.person_ref == "P-newer") == 1
    client = aioredis.from_url(redis_url)
    (_id, fields), = await client.xrange(dead_letter_stream(housing.settings.namespace))
    reason = fields[b"reason"].decode()
    assert "RequestAssessed v3" in reason and "v1 reader" in reason and "person_ref" in reason
    await client.aclose()


async def test_a_start_that_fails_midway_stops_what_it_had_started(store, make_database, redis_url, namespace):
    """A subscriber that cannot start (Redis cut at that moment) fails the start; the subscribers
    started before it stop too, rather than handle events in a process that is exiting."""
    settings = HousingSettings(redis_url=redis_url, database_url=make_database(store, "housing"), namespace=namespace,
                               consumer_name="housing-test", poll_interval_ms=50)
    runtime = ServiceRuntime(settings, tables=HOUSING_TABLES, handlers=Housing(postgres=store == "postgres").handlers())
    runtime.startup.append(lambda: seed_places(runtime.sessions))
    subscribers = runtime.consumer.subscribers
    started: list = []

    def starting(sub):
        start = sub.start

        async def start_or_fail(*args, **kwargs):
            if len(started) == len(subscribers) - 1:
                raise TimeoutError("no answer from Redis within 3 s")  # the last one to start
            await start(*args, **kwargs)
            started.append(sub)

        return start_or_fail

    for sub in subscribers:
        sub.start = starting(sub)
    with pytest.raises(TimeoutError):
        async with runtime.lifespan()(None):
            pass
    assert len(started) == len(subscribers) - 1
    assert not any(sub.running for sub in started)
