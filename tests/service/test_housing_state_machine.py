"""A Hypothesis state machine over housing's real store (SQLite): random sequences of decisions,
staff admissions, moves, extensions, discharges, offers accepted or refused, waiting-list
changes, places taken out of service and days passing. After every step:

* occupied places are exactly the places of open stays, and no place holds two stays;
* reserved places are exactly the places of open offers;
* a vacant place and a person waiting for that kind never coexist (rule 6);
* every new offer went to whoever was first in line (urgency, then waiting time);
* the events in the outbox tell the same story as the tables.
"""

import asyncio
import json
import tempfile
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from faststream.redis import RedisBroker
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlmodel import col, select

from services.housing import domain
from services.housing.domain import HousingRefusal
from services.housing.handlers import Housing, seed_places
from services.housing.store import TABLES, Offer, Place, Stay, StayExtension, WaitlistEntry, utc
from shared.events import Envelope
from shared.events.codes import Decision, ExitDestination, PlaceKind, Track, Urgency
from shared.events.intake import RequestAssessed
from shared.messaging import MESSAGING_TABLES, EventConsumer, OutboxEntry, UnitOfWorkFactory
from shared.messaging.consumer import Entry
from shared.store import create_tables, make_engine, session_factory

PEOPLE = [f"P-{i}" for i in range(8)]
KINDS = [PlaceKind.emergency, PlaceKind.cadal]
SEED = {"flats": [
    {"code": "F-1", "address": "Rue secrète 1", "places": [{"place_ref": "PL-E1", "kind": "emergency"},
                                                           {"place_ref": "PL-E2", "kind": "emergency"},
                                                           {"place_ref": "PL-E4", "kind": "emergency"}]},
    {"code": "F-2", "address": "Rue secrète 2", "places": [{"place_ref": "PL-E3", "kind": "emergency"},
                                                           {"place_ref": "PL-C1", "kind": "cadal"},
                                                           {"place_ref": "PL-C2", "kind": "cadal"}]},
]}


def line_key(entry: WaitlistEntry) -> tuple:
    """The waiting-list order as the product states it: most urgent first, then longest waiting."""
    return (-entry.priority, utc(entry.since), entry.id)


class HousingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = tempfile.TemporaryDirectory()
        self.engine = make_engine(f"sqlite+aiosqlite:///{self.dir.name}/housing.db")
        self.sessions = session_factory(self.engine)
        self.uow = UnitOfWorkFactory(self.sessions, "machine", lambda rows: None)
        self.today = date(2027, 11, 30)
        self.housing = Housing(today=lambda: self.today)
        self.consumer = EventConsumer(RedisBroker(), service="housing", namespace="machine", consumer="machine",
                                      handlers=self.housing.handlers(), uow=self.uow)
        self.moment = datetime(2027, 11, 30, 8, tzinfo=UTC)
        seed = Path(self.dir.name) / "seed.json"
        seed.write_text(json.dumps(SEED))

        async def setup():
            await create_tables(self.engine, [*MESSAGING_TABLES, *TABLES])
            await seed_places(self.sessions, seed)

        self.run(setup())
        self.before = self.snapshot()

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    def teardown(self):
        self.run(self.engine.dispose())
        self.loop.close()
        self.dir.cleanup()

    async def command(self, method, **kwargs):
        """A staff command in its own transaction; a refusal changes nothing."""
        async with self.uow() as uow:
            try:
                await method(uow, **kwargs)
            except HousingRefusal:
                return False
            await uow.commit()
            return True

    async def rows(self, query):
        async with self.sessions() as session:
            return list((await session.exec(query)).all())

    def pick(self, query, index):
        rows = self.run(self.rows(query))
        return rows[index % len(rows)] if rows else None

    # --- what staff and intake do ------------------------------------------------------

    @initialize(urgencies=st.lists(st.sampled_from(list(Urgency)), min_size=5, max_size=len(PEOPLE) - 1))
    def a_busy_start(self, urgencies):
        """People ask for an emergency place at once: the places fill and a line forms; someone
        is in one of the two CADAL places."""
        for person, urgency in zip(PEOPLE, urgencies, strict=False):
            self.intake_decides(person, PlaceKind.emergency, urgency, Decision.accommodate)
        self.intake_decides(PEOPLE[-1], PlaceKind.cadal, Urgency.days, Decision.accommodate)

    @rule(person=st.sampled_from(PEOPLE), kind=st.sampled_from(KINDS), urgency=st.sampled_from(list(Urgency)),
          decision=st.sampled_from([Decision.accommodate, Decision.accommodate, Decision.waitlist]))
    def intake_decides(self, person, kind, urgency, decision):
        self.moment += timedelta(minutes=7)
        track = Track.cadal if kind is PlaceKind.cadal else Track.youth
        envelope = Envelope.wrap(RequestAssessed(request_ref=f"R-{person}", person_ref=person, decision=decision,
                                                 track=track, place_kind=kind if decision is Decision.accommodate else None,
                                                 urgency=urgency), occurred_at=self.moment)

        async def handle():
            async with self.uow() as uow:
                await self.housing.on_request_assessed(uow, envelope, envelope.open())
                await uow.commit()

        self.run(handle())

    @rule(decisions=st.lists(st.tuples(st.sampled_from(PEOPLE), st.sampled_from(KINDS), st.sampled_from(list(Urgency))),
                             min_size=2, max_size=6))
    def intake_admits_in_one_batch(self, decisions):
        """Admissions read together by the consumer: one prepare for the batch, writes deferred. (Only
        `accommodate`: a step with several people joining the line defeats the offer-order invariant;
        test_housing_batches.py compares mixed batches with the same events one by one.)"""
        entries = []
        for n, (person, kind, urgency) in enumerate(decisions):
            decision = Decision.accommodate
            self.moment += timedelta(minutes=1)
            track = Track.cadal if kind is PlaceKind.cadal else Track.youth
            envelope = Envelope.wrap(RequestAssessed(request_ref=f"R-{person}", person_ref=person, decision=decision,
                                                     track=track, urgency=urgency,
                                                     place_kind=kind if decision is Decision.accommodate else None),
                                     occurred_at=self.moment)
            entries.append(Entry("machine.intake", f"1-{n}".encode(), None, envelope, envelope.open()))
        self.run(self.consumer.apply(entries))

    @rule(person=st.sampled_from(PEOPLE), kind=st.sampled_from(KINDS))
    def staff_admit(self, person, kind):
        self.run(self.command(self.housing.admit, person_ref=person, place_kind=kind, staff="staff"))

    @rule(person=st.sampled_from(PEOPLE), kind=st.sampled_from(KINDS), urgency=st.sampled_from(list(Urgency)))
    def staff_puts_on_waiting_list(self, person, kind, urgency):
        self.run(self.command(self.housing.join_waitlist, person_ref=person, place_kind=kind, urgency=urgency,
                              staff="staff"))

    @rule(stay=st.integers(0, 20), place=st.integers(0, 20), anywhere=st.booleans())
    def move(self, stay, place, anywhere):
        stay = self.pick(select(Stay).where(col(Stay.ended_on).is_(None)).order_by(col(Stay.id)), stay)
        if stay is None:
            return
        vacant = select(Place).where(Place.kind == stay.place_kind, Place.state == "vacant").order_by(col(Place.id))
        target = self.pick(select(Place).order_by(col(Place.id)) if anywhere else vacant, place)
        if target is not None:
            self.run(self.command(self.housing.move, stay_ref=stay.stay_ref, to_place_ref=target.place_ref,
                                  reason="closer to school", staff="staff"))

    @rule(stay=st.integers(0, 20), days=st.integers(-3, 40))
    def extend(self, stay, days):
        stay = self.pick(select(Stay).where(col(Stay.ended_on).is_(None)).order_by(col(Stay.id)), stay)
        if stay is not None:
            self.run(self.command(self.housing.extend, stay_ref=stay.stay_ref,
                                  new_end=stay.planned_end + timedelta(days=days), reason="exams",
                                  approver="coordinator", staff="staff"))

    @rule(stay=st.integers(0, 20), destination=st.sampled_from(list(ExitDestination)), safe=st.booleans())
    def discharge(self, stay, destination, safe):
        stay = self.pick(select(Stay).where(col(Stay.ended_on).is_(None)).order_by(col(Stay.id)), stay)
        if stay is not None:
            self.run(self.command(self.housing.discharge, stay_ref=stay.stay_ref, destination=destination,
                                  planned=True, safe=safe, follow_up="weekly call", staff="staff"))

    @rule(offer=st.integers(0, 20))
    def accept_offer(self, offer):
        offer = self.pick(select(Offer).where(col(Offer.closed_at).is_(None)).order_by(col(Offer.id)), offer)
        if offer is not None:
            self.run(self.command(self.housing.accept_offer, offer_ref=offer.offer_ref, staff="staff"))

    @rule(offer=st.integers(0, 20))
    def refuse_offer(self, offer):
        offer = self.pick(select(Offer).where(col(Offer.closed_at).is_(None)).order_by(col(Offer.id)), offer)
        if offer is not None:
            self.run(self.command(self.housing.refuse_offer, offer_ref=offer.offer_ref, reason="too far",
                                  staff="staff"))

    @rule(entry=st.integers(0, 20))
    def leave_waiting_list(self, entry):
        entry = self.pick(select(WaitlistEntry).where(col(WaitlistEntry.left_at).is_(None))
                          .order_by(col(WaitlistEntry.id)), entry)
        if entry is not None:
            self.run(self.command(self.housing.leave_waitlist, entry_ref=entry.entry_ref, staff="staff"))

    @rule(place=st.integers(0, 20), out=st.booleans())
    def place_service(self, place, out):
        place = self.pick(select(Place).order_by(col(Place.id)), place)
        if out:
            self.run(self.command(self.housing.take_out_of_service, place_ref=place.place_ref, reason="leak",
                                  staff="staff"))
        else:
            self.run(self.command(self.housing.bring_back_into_service, place_ref=place.place_ref, staff="staff"))

    @precondition(lambda self: self.today < date(2029, 1, 1))
    @rule(days=st.integers(1, 40))
    def days_pass(self, days):
        self.today += timedelta(days=days)
        self.moment += timedelta(days=days)
        self.run(self.housing.announce_ending_stays(self.uow))

    # --- what must always hold ---------------------------------------------------------

    def snapshot(self) -> dict:
        async def read():
            async with self.sessions() as session:
                return {
                    "places": (await session.exec(select(Place))).all(),
                    "stays": (await session.exec(select(Stay).where(col(Stay.ended_on).is_(None)))).all(),
                    "offers": (await session.exec(select(Offer))).all(),
                    "entries": (await session.exec(select(WaitlistEntry))).all(),
                    "events": Counter((await session.exec(select(OutboxEntry.event_type))).all()),
                    "extensions": (await session.exec(select(StayExtension).order_by(col(StayExtension.id)))).all(),
                    "notices": [json.loads(body)["payload"] for body in (await session.exec(
                        select(OutboxEntry.body).where(OutboxEntry.event_type == "StayEnding"))).all()],
                }

        return self.run(read())

    @invariant()
    def housing_rules_hold(self):
        now = self.snapshot()
        self.occupied_places_are_the_places_of_open_stays(now)
        self.reserved_places_are_the_places_of_open_offers(now)
        self.the_waiting_list_order_is_respected(self.before, now)
        self.the_events_tell_the_same_story(now)
        self.before = now

    def occupied_places_are_the_places_of_open_stays(self, now):
        occupied = {p.id for p in now["places"] if p.state == "occupied"}
        assert occupied == {s.place_id for s in now["stays"]}
        assert max(Counter(s.place_id for s in now["stays"]).values(), default=0) <= 1
        assert max(Counter(s.person_ref for s in now["stays"]).values(), default=0) <= 1
        for kind in KINDS:
            in_service = [p for p in now["places"] if p.kind == kind.value and p.state != "out_of_service"]
            assert len([s for s in now["stays"] if s.place_kind == kind.value]) <= len(in_service)

    def reserved_places_are_the_places_of_open_offers(self, now):
        open_offers = [o for o in now["offers"] if o.closed_at is None]
        assert {p.id for p in now["places"] if p.state == "reserved"} == {o.place_id for o in open_offers}
        assert len(open_offers) == len({o.place_id for o in open_offers})
        entries = {e.id: e for e in now["entries"]}
        assert all(entries[o.waitlist_id].left_at is None for o in open_offers)

    def the_waiting_list_order_is_respected(self, before, now):
        holding = {o.waitlist_id for o in now["offers"] if o.closed_at is None}
        held_before = {o.waitlist_id for o in before["offers"] if o.closed_at is None}
        open_before = {e.id for e in before["entries"] if e.left_at is None}
        known_before = {e.id for e in before["entries"]}
        offered_before = {o.id for o in before["offers"]}
        for kind in KINDS:
            places = [p for p in now["places"] if p.kind == kind.value]
            waiting = [e for e in now["entries"]
                       if e.place_kind == kind.value and e.left_at is None and e.id not in holding]
            # Rule 6: a freed place goes to the next person waiting; none stays vacant meanwhile.
            assert not (waiting and any(p.state == "vacant" for p in places))

            # Every offer made in this step went to whoever was first in line: people waiting
            # without an offer before the step or who joined during it, less those who left.
            new_offers = [o for o in now["offers"] if o.id not in offered_before and o.place_kind == kind.value]
            if not new_offers:
                continue
            offered_now = {o.waitlist_id for o in new_offers}
            in_line = [e for e in now["entries"] if e.place_kind == kind.value and e.id not in held_before
                       and (e.id in open_before or e.id not in known_before)
                       and (e.left_at is None or e.id in offered_now)]
            expected = [e.id for e in sorted(in_line, key=line_key)[:len(new_offers)]]
            assert sorted(offered_now) == sorted(expected)

    def the_events_tell_the_same_story(self, now):
        events = now["events"]
        assert events["PersonAdmitted"] - events["PersonDischarged"] == len(now["stays"])
        assert events["PlaceOffered"] == len(now["offers"])
        assert events["StayExtended"] == len(now["extensions"])
        for stay in now["stays"]:
            extended = [x.new_end for x in now["extensions"] if x.stay_id == stay.id]
            assert stay.planned_end == (extended[-1] if extended else domain.planned_end(stay.starts_on))
        notices = [(n["stay_ref"], n["planned_end"], n["days_before"]) for n in now["notices"]]
        assert len(notices) == len(set(notices))  # each threshold announced at most once


# No shrinking: on a real store it takes minutes; a failure prints the steps as found.
HousingMachine.TestCase.settings = settings(max_examples=20, stateful_step_count=20, deadline=None,
                                            phases=[Phase.explicit, Phase.reuse, Phase.generate],
                                            suppress_health_check=[HealthCheck.too_slow])
TestHousingStateMachine = HousingMachine.TestCase
