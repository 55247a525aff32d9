"""Housing as separate processes on one Redis: two replicas of one consumer group share a store
and never double-book; the stay clock announces each threshold once across restarts and replicas."""

import asyncio
import json
import random
import time
from collections import Counter
from datetime import date

import httpx
import redis
from faststream.redis import RedisBroker
from faststream.redis.parser import BinaryMessageFormatV1

from shared.events import Envelope, stream_name
from shared.events.codes import Decision, PlaceKind, Track, Urgency
from shared.events.intake import RequestAssessed
from shared.testing.stack import free_port
from tests.conftest import store_kinds

from .helpers import staff_headers, wait_for


def housing_events(redis_url: str, namespace: str) -> list[dict]:
    """Every event housing published, read back through FastStream's own message format, once per
    event id as consumers' inboxes see them: with replicas, two relays may publish the same outbox row."""
    client = redis.Redis.from_url(redis_url)
    entries = client.xrange(stream_name(namespace, "housing"))
    client.close()
    envelopes = [json.loads(BinaryMessageFormatV1.parse(fields[b"__data__"])[0]) for _id, fields in entries]
    return list({e["event_id"]: e for e in envelopes}.values())


def write_seed(path, places: int, kind: str = "emergency"):
    flats = [{"code": f"F-{f}", "address": f"Rue secrète {f}", "places": []} for f in range(1, 7)]
    for n in range(places):
        flats[n % len(flats)]["places"].append({"place_ref": f"PL-{n + 1:03d}", "kind": kind})
    path.write_text(json.dumps({"flats": flats}))
    return path


async def publish_twice_at_once(redis_url: str, namespace: str, envelopes: list[Envelope]) -> None:
    broker = RedisBroker(redis_url)
    await broker.connect()
    stream = stream_name(namespace, "intake")
    try:
        copies = [e.model_dump(mode="json") for e in envelopes for _ in range(2)]
        random.Random(4).shuffle(copies)  # the two copies of an event land in different batches, at either replica
        for start in range(0, len(copies), 40):  # 40 at a time: the client's connection pool is bounded
            await asyncio.gather(*[broker.publish(body, stream=stream) for body in copies[start:start + 40]])
    finally:
        await broker.stop()


def api(url: str, path: str, **params):
    response = httpx.get(f"{url}{path}", headers=staff_headers(), params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_two_replicas_receiving_200_decisions_twice_for_30_places_admit_30_and_waitlist_170(
        stack_factory, make_database, redis_url, namespace, tmp_path):
    store = store_kinds()[-1]  # PostgreSQL when the machine has one
    stack = stack_factory(database_urls={"housing": make_database(store, "replicas")},
                          extra_env={"HOUSING_SEED_FILE": str(write_seed(tmp_path / "thirty.json", 30)),
                                     "HOUSING_BATCH_SIZE": "10"})
    replicas = [stack.add("housing", instance="-a", consumer="housing-a"),
                stack.add("housing", instance="-b", consumer="housing-b", port=free_port())]
    for replica in replicas:  # one after the other: the first creates the tables and loads the inventory
        replica.start()
        replica.wait_healthy()

    urgencies = list(Urgency)
    decisions = [Envelope.wrap(RequestAssessed(request_ref=f"R-{i:03d}", person_ref=f"P-{i:03d}",
                                               decision=Decision.accommodate, track=Track.youth,
                                               place_kind=PlaceKind.emergency, urgency=urgencies[i % 3]))
                 for i in range(200)]
    asyncio.run(publish_twice_at_once(redis_url, namespace, decisions))

    url_a, url_b = (r.url for r in replicas)
    settled = wait_for(lambda: len(api(url_a, "/api/stays")) == 30 and len(api(url_b, "/api/waitlist")) == 170
                       and _idle(redis_url, namespace, replicas), timeout=60)
    assert settled, stack.logs()[-3000:]

    stays = api(url_a, "/api/stays")
    assert len({s["place_ref"] for s in stays}) == 30  # no place holds two stays
    assert len({s["person_ref"] for s in stays}) == 30
    board = api(url_b, "/api/board")
    (emergency,) = [t for t in board["totals"] if t["place_kind"] == "emergency"]
    assert (emergency["total"], emergency["occupied"], emergency["vacant"], emergency["waiting"]) == (30, 30, 0, 170)
    line = api(url_a, "/api/waitlist", place_kind="emergency")
    assert [w["position"] for w in line] == list(range(1, 171))
    ranks = [{"immediate": 0, "days": 1, "weeks": 2}[w["urgency"]] for w in line]
    assert ranks == sorted(ranks)  # the most urgent first

    # What the other services see: one event per person, 30 admissions and 170 waitlisted.
    events = housing_events(redis_url, namespace)
    kinds = Counter(e["type"] for e in events)
    assert (kinds["PersonAdmitted"], kinds["PersonWaitlisted"]) == (30, 170), kinds
    assert len({e["payload"]["person_ref"] for e in events}) == 200
    assert {e["payload"]["place_ref"] for e in events if e["type"] == "PersonAdmitted"} == {s["place_ref"] for s in stays}

    # Both replicas took part, and each saw duplicates that changed nothing.
    stats = [httpx.get(f"{r.url}/health/stats", timeout=5).json()["consumer"] for r in replicas]
    assert all(s["processed"] > 0 for s in stats), stats
    assert sum(s["processed"] for s in stats) == 200, stats
    logs = stack.logs()
    assert "Rue secrète" not in logs  # addresses never reach a log


def _idle(redis_url: str, namespace: str, replicas) -> bool:
    client = redis.Redis.from_url(redis_url)
    pending = client.xpending(stream_name(namespace, "intake"), "housing")["pending"]
    client.close()
    backlog = sum(httpx.get(f"{r.url}/health/stats", timeout=5).json()["outbox_backlog"] for r in replicas)
    return pending == 0 and backlog == 0


def test_stay_ending_is_announced_once_per_threshold_when_housing_restarts_between_the_threshold_and_the_next_tick(
        stack_factory, redis_url, namespace):
    stack = stack_factory(extra_env={"HOUSING_CLOCK_TICK_SECONDS": "0.3"})
    first = stack.add("housing", consumer="housing-1")
    first.start()
    first.wait_healthy()
    decision = Envelope.wrap(RequestAssessed(request_ref="R-clock", person_ref="P-clock", decision=Decision.accommodate,
                                             track=Track.youth, place_kind=PlaceKind.emergency))
    asyncio.run(publish_twice_at_once(redis_url, namespace, [decision]))
    stay = wait_for(lambda: next(iter(api(first.url, "/api/stays")), None))
    assert stay, stack.logs()
    length = (date.fromisoformat(stay["planned_end"]) - date.fromisoformat(stay["starts_on"])).days
    time.sleep(1)  # a few ticks: nothing is due three months ahead
    assert _ending(redis_url, namespace) == []

    def restart(name: str, days_left: int, *, port: int | None = None):
        """Stop whatever runs and start housing with its calendar moved to `days_left` before the end."""
        for proc in stack.services.values():
            proc.stop()
        proc = stack.add("housing", instance=name, consumer=f"housing{name}", port=port)
        proc.env["HOUSING_CLOCK_OFFSET_DAYS"] = str(length - days_left)
        proc.start()
        proc.wait_healthy()
        return proc

    # Down before the 14-day mark, back after it: announced once, by the first tick after start.
    restarted = restart("-2", days_left=10)
    assert wait_for(lambda: _ending(redis_url, namespace) == [(14, 10)]), stack.logs()[-3000:]
    time.sleep(1)  # more ticks: nothing new
    assert _ending(redis_url, namespace) == [(14, 10)]

    # Down again, back after the 3-day mark as two replicas, both ticking: the 3-day notice once
    # between them, and the 14-day one, announced before the restart, not again.
    replica_a = restart("-3", days_left=2, port=restarted.port)
    replica_b = stack.add("housing", instance="-4", consumer="housing-4", port=free_port())
    replica_b.env["HOUSING_CLOCK_OFFSET_DAYS"] = replica_a.env["HOUSING_CLOCK_OFFSET_DAYS"]
    replica_b.start()
    replica_b.wait_healthy()
    assert wait_for(lambda: len(_ending(redis_url, namespace)) >= 2), stack.logs()[-3000:]
    time.sleep(1.5)
    assert _ending(redis_url, namespace) == [(14, 10), (3, 2)]
    detail = api(replica_b.url, f"/api/stays/{stay['stay_ref']}")
    assert [(n["days_before"], n["days_left"]) for n in detail["notices"]] == [(14, 10), (3, 2)]


def _ending(redis_url: str, namespace: str) -> list[tuple[int, int]]:
    return [(e["payload"]["days_before"], e["payload"]["days_left"])
            for e in housing_events(redis_url, namespace) if e["type"] == "StayEnding"]
