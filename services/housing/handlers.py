"""Housing's use cases, one unit of work each."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import structlog
from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared.events import Envelope, new_ref
from shared.events.codes import Decision
from shared.events.housing import PersonAdmitted, PersonWaitlisted
from shared.events.intake import RequestAssessed
from shared.messaging import UnitOfWork

from . import domain
from .store import Flat, Place, Stay, WaitlistEntry

log = structlog.get_logger("housing")

SEED_FILE = Path(__file__).parent / "seed" / "places.json"


class Housing:
    def __init__(self, *, stay_months: int = 3, today=None, postgres: bool = False):
        self.stay_months = stay_months
        self.today = today or (lambda: datetime.now(UTC).date())
        self.postgres = postgres

    async def on_request_assessed(self, uow: UnitOfWork, envelope: Envelope, event: RequestAssessed) -> None:
        if event.decision is not Decision.accommodate or event.place_kind is None:
            return
        session = uow.session
        kind = event.place_kind.value
        open_stay = (await session.exec(
            select(Stay.id).where(Stay.person_ref == event.person_ref, col(Stay.ended_on).is_(None)))).first()
        waiting = (await session.exec(
            select(WaitlistEntry.id).where(WaitlistEntry.person_ref == event.person_ref,
                                           WaitlistEntry.place_kind == kind, col(WaitlistEntry.left_at).is_(None)))).first()
        if open_stay is not None or waiting is not None:
            log.info("admission.already_handled", event_id=envelope.event_id)
            return

        place = await self._take_vacant_place(uow, kind)
        if place is not None:
            await self._start_stay(uow, envelope, place, event.person_ref, event.request_ref)
            return
        entry = WaitlistEntry(person_ref=event.person_ref, request_ref=event.request_ref, place_kind=kind,
                              priority=domain.URGENCY_PRIORITY.get(event.urgency.value, 0),
                              since=envelope.occurred_at)
        session.add(entry)
        await session.flush()
        position = await self._position(uow, entry)
        uow.emit(PersonWaitlisted(person_ref=event.person_ref, request_ref=event.request_ref,
                                  place_kind=event.place_kind, position=position), causation=envelope)
        log.info("admission.waitlisted", event_id=envelope.event_id, place_kind=kind, position=position)

    async def _take_vacant_place(self, uow: UnitOfWork, kind: str) -> Place | None:
        session = uow.session
        query = select(Place).where(Place.kind == kind, Place.state == "vacant").order_by(col(Place.id)).limit(5)
        if self.postgres:
            query = query.with_for_update(skip_locked=True)
        for place in (await session.exec(query)).all():
            # Optimistic claim: only one transaction can move this place from vacant to occupied.
            result = await session.exec(
                update(Place).where(col(Place.id) == place.id, col(Place.state) == "vacant", col(Place.version) == place.version)
                .values(state="occupied", version=place.version + 1)
            )
            if result.rowcount == 1:
                await session.refresh(place)
                return place
        return None

    async def _start_stay(self, uow: UnitOfWork, cause: Envelope, place: Place, person_ref: str, request_ref: str | None) -> Stay:
        starts = self.today()
        stay = Stay(stay_ref=new_ref("S"), person_ref=person_ref, request_ref=request_ref, place_id=place.id,
                    place_kind=place.kind, starts_on=starts, planned_end=domain.planned_end(starts, self.stay_months))
        uow.session.add(stay)
        await uow.session.flush()
        uow.emit(PersonAdmitted(stay_ref=stay.stay_ref, person_ref=person_ref, request_ref=request_ref,
                                place_ref=place.place_ref, place_kind=place.kind, starts_on=stay.starts_on,
                                planned_end=stay.planned_end), causation=cause)
        log.info("admission.admitted", event_id=cause.event_id, stay_ref=stay.stay_ref, place_ref=place.place_ref)
        return stay

    async def _position(self, uow: UnitOfWork, entry: WaitlistEntry) -> int:
        ahead = (await uow.session.exec(
            select(func.count()).select_from(WaitlistEntry).where(
                WaitlistEntry.place_kind == entry.place_kind, col(WaitlistEntry.left_at).is_(None),
                col(WaitlistEntry.id) != entry.id,
                (col(WaitlistEntry.priority) > entry.priority)
                | ((col(WaitlistEntry.priority) == entry.priority) & (col(WaitlistEntry.since) <= entry.since)),
            ))).one()
        return int(ahead) + 1

    def handlers(self) -> dict:
        return {"RequestAssessed": self.on_request_assessed}


async def seed_places(sessions, seed_file: Path = SEED_FILE) -> int:
    """Load the inventory on first start; a second replica starting at once finds it done."""
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
                    session.add(Place(place_ref=p["place_ref"], flat_id=flat.id, kind=p["kind"]))
                    count += 1
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return 0
        return count
