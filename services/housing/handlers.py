"""Housing's use cases, one unit of work each.

The event handler does not commit (the consumer commits a batch with its inbox rows); the
staff commands are called by api.py, which commits. Every change to places of one kind first
takes that kind's allocation lock (a row update), so replicas allocate one after the other;
every place change is also an optimistic `UPDATE ... WHERE state = ... AND version = ...`, and
the partial unique indexes refuse a second open stay or offer whatever happens above them.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import bindparam, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from shared.events import Envelope, Event, new_ref
from shared.events.codes import Decision, ExitDestination, PlaceKind, Track, Urgency
from shared.events.housing import (
    PersonAdmitted,
    PersonDischarged,
    PersonLeftWaitlist,
    PersonMoved,
    PersonWaitlisted,
    PlaceFreed,
    PlaceOffered,
    StayEnding,
    StayExtended,
    WaitlistExit,
)
from shared.events.erasure import ErasureConfirmed
from shared.events.intake import ErasureRequested, RequestAssessed
from shared.messaging import Prepared, UnitOfWork

from . import domain
from .domain import Conflict, InvalidInput, NotFound, PlaceState
from .store import (
    AllocationLock,
    Flat,
    Offer,
    Place,
    Stay,
    StayExtension,
    StayMove,
    StayNotice,
    WaitlistEntry,
    utc,
)

log = structlog.get_logger("housing")

SEED_FILE = Path(__file__).parent / "seed" / "places.json"
INTAKE_DECISION = "intake-decision"  # who added a stay or waiting entry that came from an assessment


# Built once: every admission runs them, and building a statement costs more than SQLite answering it.
FIRST_VACANT = (select(Place).where(col(Place.kind) == bindparam("kind"), col(Place.state) == PlaceState.vacant)
                .order_by(col(Place.id)).limit(1))
OPEN_STAY_OF = select(Stay).where(col(Stay.person_ref) == bindparam("person_ref"), col(Stay.ended_on).is_(None))
OPEN_ENTRY = select(WaitlistEntry).where(col(WaitlistEntry.person_ref) == bindparam("person_ref"),
                                         col(WaitlistEntry.place_kind) == bindparam("kind"),
                                         col(WaitlistEntry.left_at).is_(None))
_place = Place.__table__.c
# A run of admissions claims its places in one executemany; each must still be vacant at the version read.
CLAIM_PLACE = (update(Place.__table__)
               .where(_place.id == bindparam("place_id"), _place.state == PlaceState.vacant.value,
                      _place.version == bindparam("read_version"))
               .values(state=PlaceState.occupied.value, version=bindparam("new_version"), changed_at=bindparam("at")))
OPEN_STAY = insert(Stay.__table__)
VACANT = (select(Place.id, Place.place_ref, Place.version)
          .where(col(Place.kind) == bindparam("kind"), col(Place.state) == PlaceState.vacant)
          .order_by(col(Place.id)).limit(bindparam("count")))
# Writing the row takes SQLite's lock (PostgreSQL's row lock) until the transaction ends.
LOCK_KIND = (update(AllocationLock).where(col(AllocationLock.kind) == bindparam("lock_kind"))
             .values(version=AllocationLock.version + 1).execution_options(synchronize_session=False))
STAYING_AMONG = select(Stay.person_ref).where(col(Stay.person_ref).in_(bindparam("refs", expanding=True)),
                                              col(Stay.ended_on).is_(None))
WAITING_AMONG = select(WaitlistEntry.person_ref, WaitlistEntry.place_kind).where(
    col(WaitlistEntry.person_ref).in_(bindparam("refs", expanding=True)), col(WaitlistEntry.left_at).is_(None))
ADMISSIONS = "housing.admissions"  # uow.memo key


@dataclass
class Admissions:
    """What a run of assessed requests needs to know, read once after taking the kinds' locks:
    who has an open stay or waits already, and the first vacant places of each kind, in order."""

    stays: set[str]
    waiting: set[tuple[str, str]]  # (person_ref, kind)
    vacant: dict[str, deque] = field(default_factory=dict)  # kind -> rows (id, place_ref, version)


@dataclass(frozen=True)
class EndingStay:
    id: int
    stay_ref: str
    person_ref: str
    planned_end: date
    correlation_id: str | None


@dataclass(frozen=True)
class Cause:
    """What a change is attributed to: the event that caused it, or the staff member, and the flow."""

    envelope: Envelope | None = None
    correlation_id: str | None = None
    staff: str = INTAKE_DECISION


class Housing:
    def __init__(self, *, stay_months: int = 3, today: Callable[[], date] | None = None, postgres: bool = False,
                 ending_thresholds: Iterable[int] = (14, 3)):
        # `postgres` is accepted for existing callers: allocation serialises on the kind lock on both engines.
        self.stay_months = stay_months
        self.today = today or (lambda: datetime.now(UTC).date())
        self.ending_thresholds = tuple(sorted(set(ending_thresholds), reverse=True))

    def handlers(self) -> dict:
        return {"RequestAssessed": Prepared(self.on_request_assessed, self.prepare_admissions),
                "ErasureRequested": self.on_erasure_requested}

    # --- erasure (GDPR Art. 17) -------------------------------------------------------

    async def on_erasure_requested(self, uow: UnitOfWork, envelope: Envelope, event: ErasureRequested) -> None:
        """Erase the person in one unit of work. Waiting entries, extensions (reason, approver) go;
        stays and offers stay for occupancy and statistics under a per-erasure tombstone, their free
        text blanked. An open stay keeps its place occupied: the bed is still taken."""
        erased = await self.erase_person(uow, event.person_ref, domain.tombstone(event.erasure_ref))
        uow.emit(ErasureConfirmed(erasure_ref=event.erasure_ref, person_ref=event.person_ref, service="housing",
                                  records_erased=erased), causation=envelope)
        log.info("erasure.done", event_id=envelope.event_id, erasure_ref=event.erasure_ref, records_erased=erased)

    async def erase_person(self, uow: UnitOfWork, person_ref: str, tombstone: str) -> int:
        session = uow.session
        erased = 0
        stays = (await session.exec(select(Stay).where(Stay.person_ref == person_ref))).all()
        for stay in stays:
            extensions = (await session.exec(select(StayExtension).where(StayExtension.stay_id == stay.id))).all()
            for extension in extensions:
                await session.delete(extension)
            moves = (await session.exec(select(StayMove).where(StayMove.stay_id == stay.id))).all()
            for move in moves:
                move.reason = ""
                session.add(move)
            stay.person_ref = tombstone
            stay.request_ref = None
            stay.correlation_id = None
            stay.follow_up = None
            session.add(stay)
            erased += 1 + len(extensions) + len(moves)
        offers = (await session.exec(select(Offer).where(Offer.person_ref == person_ref))).all()
        for offer in offers:
            offer.person_ref = tombstone
            offer.reason = None
            session.add(offer)
            erased += 1
        entries = (await session.exec(select(WaitlistEntry).where(WaitlistEntry.person_ref == person_ref))).all()
        offered = {offer.waitlist_id for offer in offers}
        for entry in entries:
            if entry.id in offered:  # an offer points at it: keep the line, not the person
                entry.person_ref = tombstone
                entry.request_ref = None
                entry.correlation_id = None
                session.add(entry)
            else:
                await session.delete(entry)
            erased += 1
        return erased

    # --- reacting to intake's decisions -----------------------------------------------

    @staticmethod
    def _kind_to_house(event: RequestAssessed) -> str | None:
        """The kind of place an assessment asks housing for, or None when it asks for none."""
        if event.decision not in (Decision.accommodate, Decision.waitlist) or event.track is Track.minor:
            return None
        return domain.place_kind_for(event.track, event.place_kind)

    async def prepare_admissions(self, uow: UnitOfWork, events: list) -> None:
        wanted = [(event, kind) for _, event in events if (kind := self._kind_to_house(event)) is not None]
        if not wanted:
            return
        for kind in sorted({kind for _, kind in wanted}):
            await self._lock_kind(uow, kind)
        refs = {event.person_ref for event, _ in wanted}
        known = Admissions(
            stays=set((await uow.session.exec(STAYING_AMONG, params={"refs": list(refs)})).all()),
            waiting=set((await uow.session.exec(WAITING_AMONG, params={"refs": list(refs)})).all()))
        needed: dict[str, int] = {}
        for event, kind in wanted:
            if event.decision is Decision.accommodate:
                needed[kind] = needed.get(kind, 0) + 1
        for kind, count in needed.items():
            known.vacant[kind] = deque((await uow.session.exec(VACANT, params={"kind": kind, "count": count})).all())
        uow.memo[ADMISSIONS] = known

    async def on_request_assessed(self, uow: UnitOfWork, envelope: Envelope, event: RequestAssessed) -> None:
        kind = self._kind_to_house(event)
        if kind is None:
            if event.track is Track.minor and event.decision in (Decision.accommodate, Decision.waitlist):
                log.warning("admission.minor_refused", event_id=envelope.event_id)  # rule 2, whatever the decision says
            elif event.decision in (Decision.accommodate, Decision.waitlist):
                log.warning("admission.no_place_kind", event_id=envelope.event_id)
            return
        session = uow.session
        cause = Cause(envelope=envelope, correlation_id=envelope.correlation_id)
        known: Admissions | None = uow.memo.get(ADMISSIONS)
        if known is None:
            await self._lock_kind(uow, kind)
            handled = (await self._open_stay_of(uow, event.person_ref) is not None
                       or await self._open_entry(uow, event.person_ref, kind) is not None)
        else:
            handled = event.person_ref in known.stays or (event.person_ref, kind) in known.waiting
        if handled:
            log.info("admission.already_handled", event_id=envelope.event_id)
            return
        if known is not None:
            if event.decision is Decision.accommodate and known.vacant.get(kind):
                self._admit_in_run(uow, known, known.vacant[kind].popleft(), kind, event, cause)
                return
            await uow.write_deferred()  # the waiting list below reads the store; the rest of the run does too

        if event.decision is Decision.accommodate:
            place = (await session.exec(FIRST_VACANT, params={"kind": kind})).first()
            if place is not None:
                await self._change_place(uow, place, PlaceState.occupied)
                await self._start_stay(uow, place, event.person_ref, event.request_ref, cause)
                return
        await self._join_waitlist(uow, event.person_ref, event.request_ref, kind, domain.priority_for(event.urgency),
                                  utc(envelope.occurred_at), cause)
        await self._offer_vacant_places(uow, kind, cause)

    # --- staff commands -----------------------------------------------------------------

    async def admit(self, uow: UnitOfWork, *, person_ref: str, staff: str, place_kind: PlaceKind | None = None,
                    place_ref: str | None = None, request_ref: str | None = None) -> Stay:
        """Admit straight into a vacant place (a given one, or any of the kind)."""
        if place_ref:
            kind = (await self._place_by_ref(uow, place_ref)).kind
            if place_kind is not None and place_kind.value != kind:
                raise InvalidInput("place_ref", f"is a {kind} place, not {place_kind.value}")
        elif place_kind is not None:
            kind = place_kind.value
        else:
            raise InvalidInput("place_kind", "give a place_kind or a place_ref")
        await self._lock_kind(uow, kind)
        if (stay := await self._open_stay_of(uow, person_ref)) is not None:
            raise Conflict(f"{person_ref} already has an open stay {stay.stay_ref}")
        entry = await self._open_entry(uow, person_ref, kind)
        if entry is not None and (offer := await self._open_offer_for_entry(uow, entry.id)) is not None:
            raise Conflict(f"{person_ref} holds offer {offer.offer_ref}: accept it instead")
        if place_ref:
            place = await self._place_by_ref(uow, place_ref)
            if place.state != PlaceState.vacant:
                raise Conflict(f"place {place_ref} is {place.state}")
        else:
            place = (await uow.session.exec(FIRST_VACANT, params={"kind": kind})).first()
            if place is None:
                raise Conflict(f"no vacant {kind} place: put the person on the waiting list")
        cause = Cause(staff=staff, correlation_id=entry.correlation_id if entry else None)
        await self._change_place(uow, place, PlaceState.occupied)
        if entry is not None:
            await self._close_entry(uow, entry, "admitted")
        return await self._start_stay(uow, place, person_ref, request_ref or (entry.request_ref if entry else None), cause)

    async def extend(self, uow: UnitOfWork, *, stay_ref: str, new_end: date, reason: str, approver: str, staff: str) -> Stay:
        stay = await self._open_stay(uow, stay_ref)
        domain.check_extension(stay.planned_end, new_end)
        previous = stay.planned_end
        await self._update_stay(uow, stay, planned_end=new_end)
        uow.session.add(StayExtension(stay_id=stay.id, previous_end=previous, new_end=new_end, reason=reason,
                                      approver=approver, recorded_by=staff))
        self._emit(uow, StayExtended(stay_ref=stay.stay_ref, person_ref=stay.person_ref, previous_planned_end=previous,
                                     planned_end=new_end), Cause(staff=staff, correlation_id=stay.correlation_id))
        log.info("stay.extended", stay_ref=stay.stay_ref, planned_end=new_end.isoformat())
        return stay

    async def move(self, uow: UnitOfWork, *, stay_ref: str, to_place_ref: str, reason: str, staff: str) -> Stay:
        stay = await self._open_stay(uow, stay_ref)
        target = await self._place_by_ref(uow, to_place_ref)
        if target.kind != stay.place_kind:
            raise InvalidInput("to_place_ref", f"is a {target.kind} place; a move stays within {stay.place_kind} places "
                                               "(to change kind, discharge and admit)")
        await self._lock_kind(uow, stay.place_kind)
        stay = await self._open_stay(uow, stay_ref)
        target = await self._place_by_ref(uow, to_place_ref)
        if target.id == stay.place_id:
            raise InvalidInput("to_place_ref", "is the place the person already stays in")
        if target.state != PlaceState.vacant:
            raise Conflict(f"place {to_place_ref} is {target.state}")
        origin = await uow.session.get(Place, stay.place_id, populate_existing=True)
        cause = Cause(staff=staff, correlation_id=stay.correlation_id)
        await self._change_place(uow, target, PlaceState.occupied)
        await self._update_stay(uow, stay, place_id=target.id)
        uow.session.add(StayMove(stay_id=stay.id, from_place_id=origin.id, to_place_id=target.id, reason=reason,
                                 recorded_by=staff))
        self._emit(uow, PersonMoved(stay_ref=stay.stay_ref, person_ref=stay.person_ref, from_place_ref=origin.place_ref,
                                    to_place_ref=target.place_ref, place_kind=PlaceKind(stay.place_kind)), cause)
        log.info("stay.moved", stay_ref=stay.stay_ref, from_place_ref=origin.place_ref, to_place_ref=target.place_ref)
        await self._free(uow, origin, cause)
        return stay

    async def discharge(self, uow: UnitOfWork, *, stay_ref: str, destination: ExitDestination, planned: bool, safe: bool,
                        follow_up: str, staff: str, ended_on: date | None = None) -> Stay:
        stay = await self._open_stay(uow, stay_ref)
        await self._lock_kind(uow, stay.place_kind)
        stay = await self._open_stay(uow, stay_ref)
        ended_on = ended_on or self.today()
        domain.check_discharge_date(stay.starts_on, ended_on, self.today())
        await self._update_stay(uow, stay, ended_on=ended_on, exit_destination=destination.value, exit_planned=planned,
                                exit_safe=safe, follow_up=follow_up, discharged_by=staff)
        place = await uow.session.get(Place, stay.place_id, populate_existing=True)
        cause = Cause(staff=staff, correlation_id=stay.correlation_id)
        self._emit(uow, PersonDischarged(stay_ref=stay.stay_ref, person_ref=stay.person_ref, place_ref=place.place_ref,
                                         destination=destination, planned=planned, safe=safe, ended_on=ended_on,
                                         follow_up_planned=bool(follow_up.strip())), cause)
        log.info("stay.discharged", stay_ref=stay.stay_ref, destination=destination.value)
        await self._free(uow, place, cause)
        return stay

    async def accept_offer(self, uow: UnitOfWork, *, offer_ref: str, staff: str) -> Stay:
        offer = await self._open_offer(uow, offer_ref)
        await self._lock_kind(uow, offer.place_kind)
        offer = await self._open_offer(uow, offer_ref)
        if (stay := await self._open_stay_of(uow, offer.person_ref)) is not None:
            raise Conflict(f"{offer.person_ref} still has open stay {stay.stay_ref}: discharge it first "
                           "(destination post_shelter), then accept")
        entry = await uow.session.get(WaitlistEntry, offer.waitlist_id, populate_existing=True)
        place = await uow.session.get(Place, offer.place_id, populate_existing=True)
        await self._change_place(uow, place, PlaceState.occupied)
        await self._close_offer(uow, offer, "accepted", staff)
        await self._close_entry(uow, entry, "admitted")
        cause = Cause(staff=staff, correlation_id=entry.correlation_id)
        return await self._start_stay(uow, place, offer.person_ref, entry.request_ref, cause, offer_ref=offer.offer_ref)

    async def refuse_offer(self, uow: UnitOfWork, *, offer_ref: str, reason: str, staff: str) -> Offer:
        """The person turns the place down: they leave that waiting list and the place goes to the next in line."""
        offer = await self._open_offer(uow, offer_ref)
        await self._lock_kind(uow, offer.place_kind)
        offer = await self._open_offer(uow, offer_ref)
        entry = await uow.session.get(WaitlistEntry, offer.waitlist_id, populate_existing=True)
        place = await uow.session.get(Place, offer.place_id, populate_existing=True)
        await self._close_offer(uow, offer, "refused", staff, reason)
        await self._close_entry(uow, entry, WaitlistExit.offer_refused.value)
        cause = Cause(staff=staff, correlation_id=entry.correlation_id)
        self._emit(uow, PersonLeftWaitlist(person_ref=entry.person_ref, place_kind=PlaceKind(entry.place_kind),
                                           reason=WaitlistExit.offer_refused, offer_ref=offer.offer_ref), cause)
        log.info("offer.refused", offer_ref=offer.offer_ref, place_ref=place.place_ref)
        await self._free(uow, place, cause)
        return offer

    async def join_waitlist(self, uow: UnitOfWork, *, person_ref: str, place_kind: PlaceKind, urgency: Urgency,
                            staff: str, request_ref: str | None = None) -> WaitlistEntry:
        kind = place_kind.value
        await self._lock_kind(uow, kind)
        if (entry := await self._open_entry(uow, person_ref, kind)) is not None:
            raise Conflict(f"{person_ref} is already waiting for a {kind} place ({entry.entry_ref})")
        stay = await self._open_stay_of(uow, person_ref)
        if stay is not None and stay.place_kind == kind:
            raise Conflict(f"{person_ref} already stays in a {kind} place ({stay.stay_ref})")
        cause = Cause(staff=staff, correlation_id=stay.correlation_id if stay else None)
        entry = await self._join_waitlist(uow, person_ref, request_ref, kind, domain.priority_for(urgency),
                                          datetime.now(UTC), cause)
        await self._offer_vacant_places(uow, kind, cause)
        return entry

    async def leave_waitlist(self, uow: UnitOfWork, *, entry_ref: str, staff: str) -> WaitlistEntry:
        entry = await self._open_entry_by_ref(uow, entry_ref)
        await self._lock_kind(uow, entry.place_kind)
        entry = await self._open_entry_by_ref(uow, entry_ref)
        cause = Cause(staff=staff, correlation_id=entry.correlation_id)
        offer = await self._open_offer_for_entry(uow, entry.id)
        await self._close_entry(uow, entry, WaitlistExit.withdrawn.value)
        self._emit(uow, PersonLeftWaitlist(person_ref=entry.person_ref, place_kind=PlaceKind(entry.place_kind),
                                           reason=WaitlistExit.withdrawn, offer_ref=offer.offer_ref if offer else None), cause)
        log.info("waitlist.withdrawn", entry_ref=entry.entry_ref)
        if offer is not None:
            await self._close_offer(uow, offer, "withdrawn", staff)
            place = await uow.session.get(Place, offer.place_id, populate_existing=True)
            await self._free(uow, place, cause)
        return entry

    async def add_flat(self, uow: UnitOfWork, *, code: str, address: str, staff: str) -> Flat:
        if (await uow.session.exec(select(Flat).where(Flat.code == code))).first() is not None:
            raise Conflict(f"flat {code} exists already")
        flat = Flat(code=code, address=address)
        uow.session.add(flat)
        await uow.session.flush()
        log.info("flat.added", flat=code, by=staff)
        return flat

    async def add_place(self, uow: UnitOfWork, *, flat_code: str, kind: PlaceKind, staff: str,
                        place_ref: str | None = None) -> Place:
        flat = (await uow.session.exec(select(Flat).where(Flat.code == flat_code))).first()
        if flat is None:
            raise NotFound(f"no flat {flat_code}")
        place_ref = place_ref or new_ref("PL")
        await self._lock_kind(uow, kind.value)
        if (await uow.session.exec(select(Place.id).where(Place.place_ref == place_ref))).first() is not None:
            raise Conflict(f"place {place_ref} exists already")
        place = Place(place_ref=place_ref, flat_id=flat.id, kind=kind.value, state=PlaceState.vacant)
        uow.session.add(place)
        await uow.session.flush()
        log.info("place.added", place_ref=place_ref, place_kind=kind.value, by=staff)
        await self._announce_free(uow, place, Cause(staff=staff))
        return place

    async def take_out_of_service(self, uow: UnitOfWork, *, place_ref: str, reason: str, staff: str) -> Place:
        kind = (await self._place_by_ref(uow, place_ref)).kind
        await self._lock_kind(uow, kind)
        place = await self._place_by_ref(uow, place_ref)
        if place.state != PlaceState.vacant:
            raise Conflict(f"place {place_ref} is {place.state}: only a vacant place can be taken out of service")
        await self._change_place(uow, place, PlaceState.out_of_service, out_of_service_reason=reason)
        log.info("place.out_of_service", place_ref=place_ref, by=staff)
        return place

    async def bring_back_into_service(self, uow: UnitOfWork, *, place_ref: str, staff: str) -> Place:
        kind = (await self._place_by_ref(uow, place_ref)).kind
        await self._lock_kind(uow, kind)
        place = await self._place_by_ref(uow, place_ref)
        if place.state != PlaceState.out_of_service:
            raise Conflict(f"place {place_ref} is {place.state}, not out of service")
        log.info("place.back_in_service", place_ref=place_ref, by=staff)
        await self._free(uow, place, Cause(staff=staff), out_of_service_reason=None)
        return place

    # --- the stay clock -----------------------------------------------------------------

    async def announce_ending_stays(self, uow_factory) -> int:
        """One tick: announce every StayEnding threshold reached and not announced yet. Returns how many.

        Safe to run in every replica at once and after any restart: the notice row and its
        outbox row commit together, and the unique key refuses a second notice for the same
        stay, planned end and threshold.
        """
        if not self.ending_thresholds:
            return 0
        today = self.today()
        horizon = today + timedelta(days=max(self.ending_thresholds))
        async with uow_factory() as uow:
            rows = (await uow.session.exec(
                select(Stay).where(col(Stay.ended_on).is_(None), col(Stay.planned_end) <= horizon).order_by(col(Stay.id))
            )).all()
            # Plain copies: the session's objects expire when the read-only transaction ends.
            stays = [EndingStay(s.id, s.stay_ref, s.person_ref, s.planned_end, s.correlation_id) for s in rows]
            announced: dict[tuple[int, date], set[int]] = {}
            if stays:
                notices = (await uow.session.exec(
                    select(StayNotice).where(col(StayNotice.stay_id).in_([s.id for s in stays])))).all()
                for notice in notices:
                    announced.setdefault((notice.stay_id, notice.planned_end), set()).add(notice.days_before)
        sent = 0
        for stay in stays:
            if domain.ending_notices_due(stay.planned_end, today, self.ending_thresholds,
                                         announced.get((stay.id, stay.planned_end), ())):
                try:
                    sent += await self._announce_ending(uow_factory, stay, today)
                except IntegrityError:
                    log.info("stay_clock.announced_elsewhere", stay_ref=stay.stay_ref)
        return sent

    async def _announce_ending(self, uow_factory, stay: EndingStay, today: date) -> int:
        async with uow_factory() as uow:
            # Lock the stay row while its planned end is still the one read: an extension that
            # committed meanwhile makes this match nothing, one that comes later waits for us.
            touched = await uow.session.exec(
                update(Stay).where(col(Stay.id) == stay.id, col(Stay.planned_end) == stay.planned_end,
                                   col(Stay.ended_on).is_(None)).values(planned_end=stay.planned_end))
            if touched.rowcount != 1:
                return 0
            done = (await uow.session.exec(select(StayNotice.days_before).where(
                StayNotice.stay_id == stay.id, StayNotice.planned_end == stay.planned_end))).all()
            due = domain.ending_notices_due(stay.planned_end, today, self.ending_thresholds, done)
            left = domain.days_left(stay.planned_end, today)
            for threshold in due:
                uow.session.add(StayNotice(stay_id=stay.id, planned_end=stay.planned_end, days_before=threshold,
                                           days_left=left, announced_on=today))
                self._emit(uow, StayEnding(stay_ref=stay.stay_ref, person_ref=stay.person_ref, planned_end=stay.planned_end,
                                           days_before=threshold, days_left=left),
                           Cause(staff="stay-clock", correlation_id=stay.correlation_id))
                log.info("stay_clock.stay_ending", stay_ref=stay.stay_ref, days_before=threshold, days_left=left)
            await uow.commit()
            return len(due)

    # --- the building blocks --------------------------------------------------------------

    def _emit(self, uow: UnitOfWork, event: Event, cause: Cause) -> None:
        uow.emit(event, causation=cause.envelope, correlation_id=cause.correlation_id)

    async def _lock_kind(self, uow: UnitOfWork, kind: str) -> None:
        if kind in uow.locks:  # held until this transaction ends; a batch takes it once
            return
        result = await uow.session.exec(LOCK_KIND, params={"lock_kind": kind})
        if result.rowcount != 1:
            raise RuntimeError(f"no allocation lock row for {kind!r}: run prepare_store first")
        uow.locks.add(kind)

    async def _change_place(self, uow: UnitOfWork, place: Place, target: PlaceState, **values) -> None:
        if not domain.can_change(place.state, target):
            raise Conflict(f"place {place.place_ref} cannot go from {place.state} to {target.value}")
        # Optimistic claim: only one transaction can move the place out of the state it read.
        changes = {"state": target.value, "version": place.version + 1, "changed_at": datetime.now(UTC), **values}
        result = await uow.session.exec(
            update(Place).where(col(Place.id) == place.id, col(Place.state) == place.state,
                                col(Place.version) == place.version)
            .values(**changes).execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise Conflict(f"place {place.place_ref} changed meanwhile; try again")
        for key, value in changes.items():  # what the row now holds, without reading it back
            set_committed_value(place, key, value)

    async def _update_stay(self, uow: UnitOfWork, stay: Stay, **values) -> None:
        result = await uow.session.exec(
            update(Stay).where(col(Stay.id) == stay.id, col(Stay.version) == stay.version, col(Stay.ended_on).is_(None))
            .values(version=stay.version + 1, **values))
        if result.rowcount != 1:
            raise Conflict(f"stay {stay.stay_ref} changed meanwhile; try again")
        await uow.session.refresh(stay)

    async def _start_stay(self, uow: UnitOfWork, place: Place, person_ref: str, request_ref: str | None, cause: Cause,
                          offer_ref: str | None = None) -> Stay:
        starts = self.today()
        stay = Stay(stay_ref=new_ref("S"), person_ref=person_ref, request_ref=request_ref,
                    correlation_id=cause.correlation_id, place_id=place.id, place_kind=place.kind, starts_on=starts,
                    planned_end=domain.planned_end(starts, self.stay_months), admitted_by=cause.staff)
        uow.session.add(stay)
        await uow.session.flush()
        self._emit(uow, PersonAdmitted(stay_ref=stay.stay_ref, person_ref=person_ref, request_ref=request_ref,
                                       place_ref=place.place_ref, place_kind=PlaceKind(place.kind), starts_on=stay.starts_on,
                                       planned_end=stay.planned_end, offer_ref=offer_ref), cause)
        log.info("admission.admitted", event_id=cause.envelope.event_id if cause.envelope else None,
                 stay_ref=stay.stay_ref, place_ref=place.place_ref)
        return stay

    def _admit_in_run(self, uow: UnitOfWork, known: Admissions, place, kind: str, event: RequestAssessed,
                      cause: Cause) -> None:
        """An admission of a prepared run: the place claim and the stay are written with the run's."""
        uow.defer(CLAIM_PLACE, {"place_id": place.id, "read_version": place.version, "new_version": place.version + 1,
                                "at": datetime.now(UTC)}, changes_one_row=True)
        starts = self.today()
        stay = {"stay_ref": new_ref("S"), "person_ref": event.person_ref, "request_ref": event.request_ref,
                "correlation_id": cause.correlation_id, "place_id": place.id, "place_kind": kind, "starts_on": starts,
                "planned_end": domain.planned_end(starts, self.stay_months), "admitted_by": cause.staff}
        uow.defer(OPEN_STAY, stay)
        known.stays.add(event.person_ref)
        self._emit(uow, PersonAdmitted(stay_ref=stay["stay_ref"], person_ref=event.person_ref,
                                       request_ref=event.request_ref, place_ref=place.place_ref,
                                       place_kind=PlaceKind(kind), starts_on=starts, planned_end=stay["planned_end"]),
                   cause)
        log.info("admission.admitted", event_id=cause.envelope.event_id, stay_ref=stay["stay_ref"],
                 place_ref=place.place_ref)

    async def _join_waitlist(self, uow: UnitOfWork, person_ref: str, request_ref: str | None, kind: str, priority: int,
                             since: datetime, cause: Cause) -> WaitlistEntry:
        entry = WaitlistEntry(entry_ref=new_ref("W"), person_ref=person_ref, request_ref=request_ref,
                              correlation_id=cause.correlation_id, place_kind=kind, priority=priority, since=since,
                              added_by=cause.staff)
        uow.session.add(entry)
        await uow.session.flush()
        position = await self.position(uow.session, entry)
        self._emit(uow, PersonWaitlisted(person_ref=person_ref, request_ref=request_ref, place_kind=PlaceKind(kind),
                                         position=position), cause)
        log.info("admission.waitlisted", event_id=cause.envelope.event_id if cause.envelope else None,
                 entry_ref=entry.entry_ref, place_kind=kind, position=position)
        return entry

    async def _free(self, uow: UnitOfWork, place: Place, cause: Cause, **values) -> None:
        await self._change_place(uow, place, PlaceState.vacant, **values)
        await self._announce_free(uow, place, cause)

    async def _announce_free(self, uow: UnitOfWork, place: Place, cause: Cause) -> None:
        self._emit(uow, PlaceFreed(place_ref=place.place_ref, place_kind=PlaceKind(place.kind)),
                   Cause(envelope=cause.envelope, staff=cause.staff))
        await self._offer_vacant_places(uow, place.kind, cause)

    async def _offer_vacant_places(self, uow: UnitOfWork, kind: str, cause: Cause) -> None:
        """Rule 6: while a place of this kind is vacant and someone waits for one, reserve it for the next in line."""
        session = uow.session
        while True:
            place = (await session.exec(FIRST_VACANT, params={"kind": kind})).first()
            if place is None:
                return
            waiting = await self.waiting_in_line(session, kind)
            chosen = domain.next_in_line([w for w, _ in waiting])
            if chosen is None:
                return
            entry = next(e for w, e in waiting if w is chosen)
            await self._change_place(uow, place, PlaceState.reserved)
            offer = Offer(offer_ref=new_ref("O"), waitlist_id=entry.id, place_id=place.id, person_ref=entry.person_ref,
                          place_kind=kind)
            session.add(offer)
            await session.flush()
            self._emit(uow, PlaceOffered(offer_ref=offer.offer_ref, person_ref=entry.person_ref, place_ref=place.place_ref,
                                         place_kind=PlaceKind(kind)),
                       Cause(envelope=cause.envelope, correlation_id=entry.correlation_id, staff=cause.staff))
            log.info("offer.made", offer_ref=offer.offer_ref, place_ref=place.place_ref, entry_ref=entry.entry_ref)

    async def waiting_in_line(self, session, kind: str) -> list[tuple[domain.Waiting, WaitlistEntry]]:
        """Open entries of this kind that hold no offer, in waiting-list order."""
        holding = select(Offer.waitlist_id).where(col(Offer.closed_at).is_(None))
        entries = (await session.exec(
            select(WaitlistEntry).where(WaitlistEntry.place_kind == kind, col(WaitlistEntry.left_at).is_(None),
                                        col(WaitlistEntry.id).not_in(holding)))).all()
        pairs = [(domain.Waiting(e.person_ref, e.priority, utc(e.since), e.id), e) for e in entries]
        return sorted(pairs, key=lambda pair: domain.line_order(pair[0]))

    async def position(self, session, entry: WaitlistEntry) -> int:
        """1 + how many people holding no offer are ahead in the line for this kind."""
        holding = select(Offer.waitlist_id).where(col(Offer.closed_at).is_(None))
        ahead = (await session.exec(
            select(func.count()).select_from(WaitlistEntry).where(
                WaitlistEntry.place_kind == entry.place_kind, col(WaitlistEntry.left_at).is_(None),
                col(WaitlistEntry.id) != entry.id, col(WaitlistEntry.id).not_in(holding),
                (col(WaitlistEntry.priority) > entry.priority)
                | ((col(WaitlistEntry.priority) == entry.priority) & (col(WaitlistEntry.since) < entry.since))
                | ((col(WaitlistEntry.priority) == entry.priority) & (col(WaitlistEntry.since) == entry.since)
                   & (col(WaitlistEntry.id) < entry.id)),
            ))).one()
        return int(ahead) + 1

    async def _close_entry(self, uow: UnitOfWork, entry: WaitlistEntry, reason: str) -> None:
        entry.left_at = datetime.now(UTC)
        entry.left_reason = reason
        uow.session.add(entry)
        await uow.session.flush()

    async def _close_offer(self, uow: UnitOfWork, offer: Offer, outcome: str, staff: str, reason: str | None = None) -> None:
        offer.closed_at = datetime.now(UTC)
        offer.outcome = outcome
        offer.closed_by = staff
        offer.reason = reason
        uow.session.add(offer)
        await uow.session.flush()

    async def _place_by_ref(self, uow: UnitOfWork, place_ref: str) -> Place:
        place = (await uow.session.exec(
            select(Place).where(Place.place_ref == place_ref).execution_options(populate_existing=True))).first()
        if place is None:
            raise NotFound(f"no place {place_ref}")
        return place

    async def _open_stay(self, uow: UnitOfWork, stay_ref: str) -> Stay:
        stay = (await uow.session.exec(
            select(Stay).where(Stay.stay_ref == stay_ref).execution_options(populate_existing=True))).first()
        if stay is None:
            raise NotFound(f"no stay {stay_ref}")
        if stay.ended_on is not None:
            raise Conflict(f"stay {stay_ref} ended on {stay.ended_on.isoformat()}")
        return stay

    async def _open_stay_of(self, uow: UnitOfWork, person_ref: str) -> Stay | None:
        return (await uow.session.exec(OPEN_STAY_OF, params={"person_ref": person_ref})).first()

    async def _open_entry(self, uow: UnitOfWork, person_ref: str, kind: str) -> WaitlistEntry | None:
        return (await uow.session.exec(OPEN_ENTRY, params={"person_ref": person_ref, "kind": kind})).first()

    async def _open_entry_by_ref(self, uow: UnitOfWork, entry_ref: str) -> WaitlistEntry:
        entry = (await uow.session.exec(
            select(WaitlistEntry).where(WaitlistEntry.entry_ref == entry_ref)
            .execution_options(populate_existing=True))).first()
        if entry is None:
            raise NotFound(f"no waiting-list entry {entry_ref}")
        if entry.left_at is not None:
            raise Conflict(f"{entry_ref} left the waiting list ({entry.left_reason})")
        return entry

    async def _open_offer(self, uow: UnitOfWork, offer_ref: str) -> Offer:
        offer = (await uow.session.exec(
            select(Offer).where(Offer.offer_ref == offer_ref).execution_options(populate_existing=True))).first()
        if offer is None:
            raise NotFound(f"no offer {offer_ref}")
        if offer.closed_at is not None:
            raise Conflict(f"offer {offer_ref} is closed ({offer.outcome})")
        return offer

    async def _open_offer_for_entry(self, uow: UnitOfWork, entry_id: int) -> Offer | None:
        return (await uow.session.exec(
            select(Offer).where(Offer.waitlist_id == entry_id, col(Offer.closed_at).is_(None)))).first()


async def prepare_store(sessions) -> None:
    """Rows the service needs whatever the inventory: one allocation lock per kind of place."""
    async with sessions() as session:
        have = set((await session.exec(select(AllocationLock.kind))).all())
        missing = [k.value for k in PlaceKind if k.value not in have]
        if not missing:
            return
        try:
            for kind in missing:
                session.add(AllocationLock(kind=kind))
            await session.commit()
        except IntegrityError:  # another replica starting at the same moment did it
            await session.rollback()


async def seed_places(sessions, seed_file: Path = SEED_FILE) -> int:
    """Load the inventory on first start; a second replica starting at once finds it done."""
    await prepare_store(sessions)
    data = json.loads(Path(seed_file).read_text())
    async with sessions() as session:
        if (await session.exec(select(func.count()).select_from(Place))).one():
            return 0
        count = 0
        try:
            for flat_data in data["flats"]:
                flat = Flat(code=flat_data["code"], address=flat_data["address"])
                session.add(flat)
                await session.flush()
                for p in flat_data["places"]:
                    session.add(Place(place_ref=p["place_ref"], flat_id=flat.id, kind=PlaceKind(p["kind"]).value))
                    count += 1
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return 0
        log.info("inventory.seeded", places=count)
        return count
