"""`refuge dead-letters`: entries dead-lettered by a real consumer (a handler that keeps failing,
a malformed event, a body that is not an object or not JSON) are listed without personal data, replayed to
their origin stream once the fault is gone, or discarded."""

import asyncio
import json
import logging
import socket

import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from sqlmodel import select
from typer.testing import CliRunner

from shared.cli import app
from shared.events import Envelope, dead_letter_stream, stream_name
from shared.events.codes import Decision, PlaceKind, Track
from shared.events.intake import RequestAssessed
from shared.messaging import MESSAGING_TABLES, EventConsumer, InboxEntry, UnitOfWorkFactory
from shared.store import create_tables, make_engine, session_factory

runner = CliRunner()


async def refuge(*args: str, input: str | None = None):
    # The command runs its own event loop, so it runs in a thread beside the test's loop.
    return await asyncio.to_thread(runner.invoke, app, list(args), input=input)


async def wait_until(predicate, timeout=15.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return False


class Housing:
    """A consumer of intake's stream whose handler fails while `broken` is set."""

    def __init__(self):
        self.broken = True
        self.handled: list[str] = []

    async def on_assessed(self, uow, envelope, event):
        if self.broken:
            raise RuntimeError("store is away")
        self.handled.append(event.person_ref)


@pytest.fixture
async def consumer(make_database, redis_url, namespace):
    engine = make_engine(make_database("sqlite", "housing"))
    await create_tables(engine, MESSAGING_TABLES)
    housing = Housing()
    # A plain logger: FastStream's default one writes to the stdout CliRunner swaps while a command runs.
    broker = RedisBroker(redis_url, socket_timeout=5, logger=logging.getLogger("faststream"), log_level=logging.DEBUG)
    sessions = session_factory(engine)
    events = EventConsumer(broker, service="housing", namespace=namespace, consumer="housing-test",
                           handlers={"RequestAssessed": housing.on_assessed},
                           uow=UnitOfWorkFactory(sessions, namespace, lambda rows: None),
                           poll_interval_ms=50, reclaim_idle_ms=1000, max_deliveries=1)
    await broker.connect()
    await events.ensure_groups()
    await broker.start()
    yield housing, broker, sessions
    await broker.stop()
    await engine.dispose()


def assessed(person_ref: str) -> dict:
    return Envelope.wrap(RequestAssessed(request_ref="R-0a1b2c", person_ref=person_ref, decision=Decision.accommodate,
                                         track=Track.youth, place_kind=PlaceKind.emergency)).model_dump(mode="json")


async def dead_letters(client, namespace):
    return await client.xrange(dead_letter_stream(namespace))


async def test_a_dead_letter_is_shown_without_personal_data_and_replayed_once_the_fault_is_gone(
        consumer, redis_url, namespace):
    housing, broker, sessions = consumer
    client = aioredis.from_url(redis_url)
    intake = stream_name(namespace, "intake")
    poison = assessed("P-5e6f7a")
    await broker.publish(poison, stream=intake)
    assert await wait_until(lambda: _count(client, namespace, 1)), "the failing event was never dead-lettered"

    opts = ["--redis-url", redis_url, "--namespace", namespace]
    listed = await refuge("dead-letters", "list", *opts, "--json")
    assert listed.exit_code == 0, listed.output
    (letter,) = json.loads(listed.output)
    assert letter["event_id"] == poison["event_id"] and letter["event_type"] == "RequestAssessed"
    assert letter["origin_stream"] == intake and letter["group"] == "housing"
    assert letter["deliveries"] >= 2 and "handler failed" in letter["reason"]

    shown = await refuge("dead-letters", "show", letter["id"], *opts)
    assert shown.exit_code == 0, shown.output
    for expected in ("payload.person_ref", "P-5e6f7a", "payload.decision", "accommodate", poison["event_id"]):
        assert expected in shown.output

    housing.broken = False
    replayed = await refuge("dead-letters", "replay", letter["id"], *opts)
    assert replayed.exit_code == 0, replayed.output
    assert await wait_until(lambda: _handled(sessions, poison["event_id"])), "the replayed event was not handled"
    assert housing.handled == ["P-5e6f7a"]
    assert await dead_letters(client, namespace) == []
    await client.aclose()


async def test_unreadable_dead_letters_are_refused_for_replay_and_discarded_on_confirmation(
        consumer, redis_url, namespace):
    _housing, broker, _sessions = consumer
    client = aioredis.from_url(redis_url)
    intake = stream_name(namespace, "intake")
    leaky = assessed("P-0c0ffee")
    leaky["payload"].update(decision="teleport", name="zanele", notes="Thrown out by her uncle",
                            date_of_birth="2004-03-14", phone="+32 470 99 88 77")
    await broker.publish(leaky, stream=intake)
    await broker.publish(["Zanele Mokoena", "+32 470 99 88 77"], stream=intake)
    await broker.publish(b"Zanele \xff\x00 not JSON", stream=intake)
    assert await wait_until(lambda: _count(client, namespace, 3)), "the malformed entries were never dead-lettered"
    first_id, second_id, third_id = [i.decode() for i, _ in await dead_letters(client, namespace)]

    opts = ["--redis-url", redis_url, "--namespace", namespace]
    outputs = [await refuge("dead-letters", "list", *opts), await refuge("dead-letters", "list", *opts, "--json"),
               await refuge("dead-letters", "show", first_id, *opts),
               await refuge("dead-letters", "show", first_id, *opts, "--json"),
               await refuge("dead-letters", "show", second_id, *opts),
               await refuge("dead-letters", "show", third_id, *opts, "--json")]
    assert all(o.exit_code == 0 for o in outputs), [o.output for o in outputs]
    text = "".join(o.output for o in outputs)
    for secret in ("zanele", "Zanele", "Mokoena", "uncle", "2004-03-14", "470 99"):
        assert secret not in text, f"{secret!r} printed"
    for key in ("payload.name", "payload.notes", "payload.date_of_birth", "payload.phone", "P-0c0ffee"):
        assert key in text
    reasons = [letter["reason"] for letter in json.loads(outputs[1].output)]
    assert reasons[0].startswith("invalid decision")
    assert "JSON array[2], not an object" in text
    assert json.loads(outputs[-1].output)["body"].startswith("unreadable")

    for unreadable in (second_id, third_id):
        refused = await refuge("dead-letters", "replay", unreadable, *opts)
        assert refused.exit_code == 1
        assert "nothing to replay" in refused.output
    unknown = await refuge("dead-letters", "replay", "1-1", *opts)
    assert unknown.exit_code == 1 and "no dead letter 1-1" in unknown.output
    assert await _count(client, namespace, 3)

    kept = await refuge("dead-letters", "discard", second_id, *opts, input="n\n")
    assert kept.exit_code == 1 and await _count(client, namespace, 3)
    discarded = await refuge("dead-letters", "discard", second_id, *opts, input="y\n")
    assert discarded.exit_code == 0, discarded.output
    assert [i.decode() for i, _ in await dead_letters(client, namespace)] == [first_id, third_id]
    everything = await refuge("dead-letters", "discard", "--all", "--yes", *opts)
    assert everything.exit_code == 0, everything.output
    assert await dead_letters(client, namespace) == []
    await client.aclose()


async def test_dead_letters_fail_clearly_when_redis_is_unreachable():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = await refuge("dead-letters", "list", "--redis-url", f"redis://127.0.0.1:{port}/0", "--timeout", "1")
    assert result.exit_code == 3 and "unreachable" in result.output


async def _count(client, namespace, n):
    return await client.xlen(dead_letter_stream(namespace)) == n


async def _handled(sessions, event_id):
    async with sessions() as session:
        return (await session.exec(select(InboxEntry).where(InboxEntry.event_id == event_id))).first() is not None
