"""The stay clock against a real store (SQLite, and PostgreSQL when given): StayEnding exactly once
per stay, planned end and threshold, across ticks, restarts, replicas and extensions."""

import asyncio
import json
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import col, select

from services.housing.handlers import Housing, seed_places
from services.housing.store import TABLES
from shared.events import Envelope
from shared.events.codes import Decision, ExitDestination, PlaceKind, Track
from shared.events.intake import RequestAssessed
from shared.messaging import MESSAGING_TABLES, OutboxEntry, UnitOfWorkFactory
from shared.store import create_tables, make_engine, session_factory
from tests.conftest import store_kinds


class Clock:
    """The injectable calendar: tests move it by hand."""

    def __init__(self, today: date):
        self.today = today

    def __call__(self) -> date:
        return self.today


def write_seed(path: Path, places: dict[str, int]) -> Path:
    """A seed file with `places[kind]` places of each kind, in two flats."""
    flats, n = [{"code": "F-A", "address": "Rue secrète 1", "places": []},
                {"code": "F-B", "address": "Rue secrète 2", "places": []}], 0
    for kind, count in places.items():
        for _ in range(count):
            n += 1
            flats[n % 2]["places"].append({"place_ref": f"PL-{n:03d}", "kind": kind})
    path.write_text(json.dumps({"flats": flats}))
    return path


class Replica:
    """One housing process's store side: its own engine and unit-of-work factory on the shared database."""

    def __init__(self, url: str, clock: Clock):
        self.engine = make_engine(url)
        self.sessions = session_factory(self.engine)
        self.uow = UnitOfWorkFactory(self.sessions, "test", lambda rows: None)
        self.housing = Housing(today=clock)

    async def close(self):
        await self.engine.dispose()


@pytest.fixture(params=store_kinds())
async def database(request, make_database, tmp_path):
    url = make_database(request.param, "clock")
    engine = make_engine(url)
    await create_tables(engine, [*MESSAGING_TABLES, *TABLES])
    await seed_places(session_factory(engine), write_seed(tmp_path / "seed.json", {"emergency": 2}))
    await engine.dispose()
    return url


async def admit(replica: Replica, person_ref: str) -> None:
    envelope = Envelope.wrap(RequestAssessed(request_ref=f"R-{person_ref}", person_ref=person_ref,
                                             decision=Decision.accommodate, track=Track.youth,
                                             place_kind=PlaceKind.emergency))
    async with replica.uow() as uow:
        await replica.housing.on_request_assessed(uow, envelope, envelope.open())
        await uow.commit()


async def emitted(replica: Replica, event_type: str) -> list[dict]:
    async with replica.sessions() as session:
        rows = (await session.exec(select(OutboxEntry).where(OutboxEntry.event_type == event_type)
                                   .order_by(col(OutboxEntry.id)))).all()
    return [json.loads(r.body)["payload"] for r in rows]


async def test_stay_ending_is_announced_once_per_threshold_across_ticks_restarts_and_replicas(database):
    clock = Clock(date(2027, 11, 30))
    first = Replica(database, clock)
    await admit(first, "P-leap")
    (admitted,) = await emitted(first, "PersonAdmitted")
    assert admitted["planned_end"] == "2028-02-29"  # three months, clamped to the leap day

    clock.today = date(2028, 2, 14)  # 15 days left
    assert await first.housing.announce_ending_stays(first.uow) == 0
    clock.today = date(2028, 2, 15)  # 14 days left
    assert await first.housing.announce_ending_stays(first.uow) == 1
    assert await first.housing.announce_ending_stays(first.uow) == 0
    await first.close()

    # a restart: a new process, same database, same day and a few days on
    restarted = Replica(database, clock)
    assert await restarted.housing.announce_ending_stays(restarted.uow) == 0
    clock.today = date(2028, 2, 25)
    assert await restarted.housing.announce_ending_stays(restarted.uow) == 0

    # two replicas ticking at the same moment, over and over, once the 3-day threshold is reached
    other = Replica(database, clock)
    clock.today = date(2028, 2, 26)
    sent = await asyncio.gather(*[r.housing.announce_ending_stays(r.uow) for r in (restarted, other) * 4])
    assert sum(sent) == 1

    notices = await emitted(other, "StayEnding")
    assert [(n["days_before"], n["days_left"], n["planned_end"]) for n in notices] == [
        (14, 14, "2028-02-29"), (3, 3, "2028-02-29")]
    assert {n["stay_ref"] for n in notices} == {admitted["stay_ref"]}
    await restarted.close()
    await other.close()


async def test_thresholds_missed_while_housing_was_down_are_each_announced_once(database):
    clock = Clock(date(2026, 1, 31))
    replica = Replica(database, clock)
    await admit(replica, "P-outage")
    (admitted,) = await emitted(replica, "PersonAdmitted")
    assert admitted["planned_end"] == "2026-04-30"  # 31 January + 3 months, clamped to 30 April

    clock.today = date(2026, 4, 28)  # housing was down since before the 14-day mark
    assert await replica.housing.announce_ending_stays(replica.uow) == 2
    assert await replica.housing.announce_ending_stays(replica.uow) == 0
    notices = await emitted(replica, "StayEnding")
    assert [(n["days_before"], n["days_left"]) for n in notices] == [(14, 2), (3, 2)]
    await replica.close()


async def test_an_extension_announces_the_new_end_again_and_a_discharge_stops_the_clock(database):
    clock = Clock(date(2026, 3, 31))
    replica = Replica(database, clock)
    await admit(replica, "P-extended")
    await admit(replica, "P-leaving")
    stays = {s["person_ref"]: s for s in await emitted(replica, "PersonAdmitted")}
    extended, leaving = stays["P-extended"]["stay_ref"], stays["P-leaving"]["stay_ref"]
    assert stays["P-extended"]["planned_end"] == "2026-06-30"

    clock.today = date(2026, 6, 16)  # 14 days left for both
    assert await replica.housing.announce_ending_stays(replica.uow) == 2
    async with replica.uow() as uow:
        await replica.housing.extend(uow, stay_ref=extended, new_end=date(2026, 7, 31), reason="training starts in August",
                                     approver="coordinator", staff="housing-worker")
        await replica.housing.discharge(uow, stay_ref=leaving, destination=ExitDestination.family, planned=True,
                                        safe=True, follow_up="call in two weeks", staff="housing-worker")
        await uow.commit()
    (extension,) = await emitted(replica, "StayExtended")
    assert (extension["previous_planned_end"], extension["planned_end"]) == ("2026-06-30", "2026-07-31")
    assert "reason" not in extension and "approver" not in extension  # staff free text stays in housing

    clock.today = date(2026, 6, 27)  # 3 days before the old end: nothing, the stay now ends on 31 July
    assert await replica.housing.announce_ending_stays(replica.uow) == 0
    clock.today = date(2026, 7, 17)
    assert await replica.housing.announce_ending_stays(replica.uow) == 1
    clock.today = date(2026, 7, 28)
    assert await replica.housing.announce_ending_stays(replica.uow) == 1
    clock.today = date(2026, 8, 10)  # overdue: every threshold was announced
    assert await replica.housing.announce_ending_stays(replica.uow) == 0

    notices = await emitted(replica, "StayEnding")
    assert [(n["stay_ref"], n["planned_end"], n["days_before"]) for n in notices] == [
        (extended, "2026-06-30", 14), (leaving, "2026-06-30", 14),
        (extended, "2026-07-31", 14), (extended, "2026-07-31", 3)]
    await replica.close()
