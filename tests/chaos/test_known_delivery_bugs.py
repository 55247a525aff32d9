"""Delivery bugs the chaos suite found in shared/messaging, kept as regression tests:
an entry whose body is not JSON, and an event of a type no contract declares, are both
dead-lettered at once while the events read with them are handled."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from faststream.redis.parser.binary import BinaryMessageFormatV1

from shared.events import dead_letter_stream, stream_name
from shared.messaging import ServiceRuntime
from shared.settings import ServiceSettings


def envelope(event_type: str, payload: dict) -> dict:
    event_id = str(uuid.uuid4())
    return {"event_id": event_id, "type": event_type, "schema_version": 1, "occurred_at": datetime.now(UTC).isoformat(),
            "correlation_id": event_id, "producer": "intake", "payload": payload}


def assessed(person_ref: str) -> dict:
    return envelope("RequestAssessed", {"request_ref": "R-" + person_ref[2:], "person_ref": person_ref,
                                        "decision": "support_only", "track": "upstream"})


async def xadd_body(client, stream: str, body) -> bytes:
    data = await BinaryMessageFormatV1.encode(message=body, reply_to=None, headers={}, correlation_id="c")
    return await client.xadd(stream, {"__data__": data})


async def eventually(predicate, timeout: float = 10.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.1)
    return False


@pytest.fixture
async def reader(redis_url, namespace, tmp_path):
    """A consumer in the housing group with one handler for RequestAssessed that records what it saw."""
    seen: list[str] = []

    async def handle(_uow, envelope, event) -> None:
        seen.append(event.person_ref)

    settings = ServiceSettings(service_name="housing", redis_url=redis_url, namespace=namespace,
                               database_url=f"sqlite+aiosqlite:///{tmp_path / 'reader.db'}",
                               consumer_name="reader", reclaim_idle_ms=300, max_deliveries=2, poll_interval_ms=50)
    runtime = ServiceRuntime(settings, tables=[], handlers={"RequestAssessed": handle})
    client = aioredis.from_url(redis_url)
    stream = stream_name(namespace, "intake")
    yield runtime, client, stream, seen
    await runtime.stop()
    await client.aclose()


async def test_an_entry_that_is_not_json_is_dead_lettered_and_the_events_read_with_it_are_handled(reader, namespace):
    runtime, client, stream, seen = reader
    bad_id = await xadd_body(client, stream, b"\x00\xffnot json {")
    await xadd_body(client, stream, assessed("P-0000000000a1"))
    await runtime.start()  # both entries arrive in one batch

    handled = await eventually(lambda: _true(seen == ["P-0000000000a1"]))
    assert handled, "the good event read in the same batch was never handled"
    # The handler runs before the commit, and the ack comes after it.
    assert await eventually(lambda: _nothing_pending(client, stream)), "an entry of the batch stayed pending"
    dead = await client.xrange(dead_letter_stream(namespace))
    assert [fields[b"origin_id"] for _id, fields in dead] == [bad_id]


async def test_an_event_of_a_type_no_contract_declares_is_dead_lettered(reader, namespace):
    runtime, client, stream, seen = reader
    unknown_id = await xadd_body(client, stream, envelope("NoSuchEvent", {"person_ref": "P-0000000000a2"}))
    await xadd_body(client, stream, assessed("P-0000000000a3"))
    await runtime.start()

    assert await eventually(lambda: _true(seen == ["P-0000000000a3"]))
    dead = await client.xrange(dead_letter_stream(namespace))
    assert [fields[b"origin_id"] for _id, fields in dead] == [unknown_id]


async def _true(value: bool) -> bool:
    return value


async def _nothing_pending(client, stream: str) -> bool:
    return (await client.xpending(stream, "housing"))["pending"] == 0
