"""The outbox relay publishes what this process just committed without reading it back, and after a
failed publish goes back to the outbox, so that the stream still carries every event once, in
commit order."""

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
from faststream.redis import RedisBroker
from faststream.redis.message import bDATA_KEY
from faststream.redis.parser.binary import BinaryMessageFormatV1
from sqlalchemy import event
from sqlmodel import col, select

from shared.events import stream_name
from shared.events.codes import Decision, Track
from shared.events.intake import RequestAssessed
from shared.messaging import MESSAGING_TABLES, OutboxEntry, OutboxRelay, UnitOfWorkFactory
from shared.store import create_tables, make_engine, session_factory
from tests.conftest import store_kinds

pytestmark = pytest.mark.parametrize("store", store_kinds())


async def stream_refs(redis_url: str, stream: str) -> list[str]:
    client = aioredis.from_url(redis_url)
    try:
        entries = await client.xrange(stream)
    finally:
        await client.aclose()
    refs = []
    for _, fields in entries:
        raw, headers = BinaryMessageFormatV1.parse(fields[bDATA_KEY])
        body = orjson.loads(raw)
        # What FastStream's broker.publish writes for a dict, so that any FastStream subscriber reads it.
        assert headers == {"correlation_id": body["correlation_id"], "content-type": "application/json",
                           "event_id": body["event_id"], "event_type": body["type"]}
        refs.append(body["payload"]["request_ref"])
    return refs


async def test_events_reach_the_stream_once_in_commit_order_across_a_failed_publish(
        store, make_database, redis_url, namespace, monkeypatch):
    url = make_database(store, "relay")
    engine = make_engine(url)
    await create_tables(engine, MESSAGING_TABLES)
    sessions = session_factory(engine)
    broker = RedisBroker(redis_url)
    await broker.connect()
    relay = OutboxRelay("intake", broker, sessions, lock_rows=store == "postgres")
    uow = UnitOfWorkFactory(sessions, namespace, relay.committed, "intake")

    async def commit(ref: str, factory=uow) -> None:
        async with factory() as work:
            work.emit(RequestAssessed(request_ref=ref, person_ref="P-relay", decision=Decision.refer, track=Track.none))
            await work.commit()

    try:
        await commit("R-0", UnitOfWorkFactory(sessions, namespace, lambda rows: None, "intake"))  # left by a run before
        await commit("R-a")
        assert await relay.publish_pending() == 2  # at start, from the outbox: the older row first
        await commit("R-a2")
        real_publish, calls = relay._publish, []

        async def redis_away_once(pending):
            calls.append(len(pending))
            if len(calls) == 1:
                raise ConnectionError("redis away")
            await real_publish(pending)

        monkeypatch.setattr(relay, "_publish", redis_away_once)
        with pytest.raises(ConnectionError):
            await relay.publish_pending()
        await commit("R-b")  # committed while the relay is behind
        while await relay.publish_pending():
            pass
        await commit("R-c")
        while await relay.publish_pending():
            pass

        assert await stream_refs(redis_url, stream_name(namespace, "intake")) == ["R-0", "R-a", "R-a2", "R-b", "R-c"]
        assert await relay.backlog() == 0  # "R-c", published from memory, is not counted while its mark waits
        await relay.mark_published()
        async with sessions() as session:
            unpublished = (await session.exec(select(OutboxEntry).where(col(OutboxEntry.published_at).is_(None)))).all()
        assert unpublished == []
        assert calls[0] == 1 and relay.published_total == 5
    finally:
        await broker.stop()
        await engine.dispose()


async def test_rows_published_one_by_one_are_marked_together_and_a_stop_marks_the_last(
        store, make_database, redis_url, namespace):
    engine = make_engine(make_database(store, "relay"))
    await create_tables(engine, MESSAGING_TABLES)
    sessions = session_factory(engine)
    marks: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_: marks.append(statement) if statement.startswith("UPDATE outbox") else None)
    broker = RedisBroker(redis_url)
    await broker.connect()
    relay = OutboxRelay("intake", broker, sessions, lock_rows=store == "postgres")
    uow = UnitOfWorkFactory(sessions, namespace, relay.committed, "intake")
    running = asyncio.create_task(relay.run())

    async def unmarked() -> int:
        async with sessions() as session:
            return len((await session.exec(select(OutboxEntry).where(col(OutboxEntry.published_at).is_(None)))).all())

    try:
        for n in range(20):
            async with uow() as work:
                work.emit(RequestAssessed(request_ref=f"R-{n}", person_ref="P-relay", decision=Decision.refer,
                                          track=Track.none))
                await work.commit()
            await asyncio.sleep(0.01)  # published from memory, one row at a time
        for _ in range(300):
            if await unmarked() == 0:
                break
            await asyncio.sleep(0.01)
        assert await unmarked() == 0
        assert 1 <= len(marks) < 10  # twenty publishes, a few marks

        async with uow() as work:
            work.emit(RequestAssessed(request_ref="R-last", person_ref="P-relay", decision=Decision.refer,
                                      track=Track.none))
            await work.commit()
        for _ in range(300):
            if len(await stream_refs(redis_url, stream_name(namespace, "intake"))) == 21:
                break
            await asyncio.sleep(0.01)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        assert await unmarked() == 0  # marked on the way out, not left to be published again
    finally:
        running.cancel()
        await broker.stop()
        await engine.dispose()
