"""Housing reads a batch of assessed requests once and defers its writes; whatever the batch holds
(the same person twice, waiting-list decisions, more people than places), the house must end as it
would have had the consumer handled the events one by one."""

import asyncio
import json
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from faststream.redis import RedisBroker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col, select

from services.housing.handlers import Housing, seed_places
from services.housing.store import TABLES, Offer, Place, Stay, WaitlistEntry
from shared.events import Envelope
from shared.events.codes import Decision, PlaceKind, Track, Urgency
from shared.events.intake import RequestAssessed
from shared.messaging import MESSAGING_TABLES, EventConsumer, OutboxEntry, UnitOfWorkFactory
from shared.messaging.consumer import Entry
from shared.store import create_tables, make_engine, session_factory
from tests.service.test_housing_state_machine import SEED

PEOPLE = [f"P-{i}" for i in range(7)]
DECISIONS = st.tuples(st.sampled_from(PEOPLE), st.sampled_from([PlaceKind.emergency, PlaceKind.cadal]),
                      st.sampled_from(list(Urgency)),
                      st.sampled_from([Decision.accommodate, Decision.accommodate, Decision.waitlist, Decision.refer]))
# Random references differ between the two runs; everything else must not.
RANDOM_REFS = {"stay_ref", "offer_ref", "entry_ref"}


def entries(decisions, start: datetime) -> list[Entry]:
    made = []
    for n, (person, kind, urgency, decision) in enumerate(decisions):
        track = Track.cadal if kind is PlaceKind.cadal else Track.youth
        envelope = Envelope.wrap(RequestAssessed(request_ref=f"R-{person}-{n}", person_ref=person, decision=decision,
                                                 track=track, urgency=urgency,
                                                 place_kind=kind if decision is Decision.accommodate else None),
                                 occurred_at=start + timedelta(minutes=n))
        made.append(Entry("batches.intake", f"1-{n}".encode(), None, envelope, envelope.open()))
    return made


async def house_after(folder: Path, before: list[Entry], batch: list[Entry], *, together: bool) -> dict:
    engine = make_engine(f"sqlite+aiosqlite:///{folder / ('together.db' if together else 'one-by-one.db')}")
    sessions = session_factory(engine)
    housing = Housing(today=lambda: date(2027, 3, 1))
    consumer = EventConsumer(RedisBroker(), service="housing", namespace="batches", consumer="batches",
                             handlers=housing.handlers(), uow=UnitOfWorkFactory(sessions, "batches", lambda rows: None))
    try:
        await create_tables(engine, [*MESSAGING_TABLES, *TABLES])
        await seed_places(sessions, folder / "seed.json")
        for entry in before:
            await consumer.apply([entry])
        if together:
            await consumer.apply(batch)
        else:
            for entry in batch:
                await consumer.apply([entry])
        async with sessions() as session:
            places = {p.id: p for p in (await session.exec(select(Place))).all()}
            stays = (await session.exec(select(Stay).where(col(Stay.ended_on).is_(None)))).all()
            waiting = (await session.exec(select(WaitlistEntry))).all()
            offers = (await session.exec(select(Offer))).all()
            events = (await session.exec(select(OutboxEntry).order_by(col(OutboxEntry.id)))).all()
    finally:
        await engine.dispose()
    return {
        "places": {p.place_ref: p.state for p in places.values()},
        "stays": sorted((s.person_ref, places[s.place_id].place_ref, s.request_ref) for s in stays),
        "waiting": sorted((w.person_ref, w.place_kind, w.priority, w.left_at is None) for w in waiting),
        "offers": sorted((o.person_ref, places[o.place_id].place_ref) for o in offers),
        "events": [(e.event_type, {k: v for k, v in json.loads(e.body)["payload"].items() if k not in RANDOM_REFS})
                   for e in events],
    }


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(DECISIONS, max_size=6), batch=st.lists(DECISIONS, min_size=2, max_size=9))
def test_a_batch_leaves_the_house_as_the_same_events_one_by_one(before, batch):
    start = datetime(2027, 3, 1, 8, tzinfo=UTC)
    earlier, together = entries(before, start - timedelta(hours=1)), entries(batch, start)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "seed.json").write_text(json.dumps(SEED))
        one_by_one = asyncio.run(house_after(Path(folder), earlier, together, together=False))
        as_batch = asyncio.run(house_after(Path(folder), earlier, together, together=True))
    assert as_batch == one_by_one
    admitted = [payload["person_ref"] for kind, payload in as_batch["events"] if kind == "PersonAdmitted"]
    assert len(admitted) == len(set(admitted)) == len(as_batch["stays"])
