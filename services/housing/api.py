"""Housing's HTTP API. Addresses are not part of any response here."""

from fastapi import Depends, APIRouter
from pydantic import BaseModel
from sqlmodel import col, select

from shared.messaging import ServiceRuntime

from .store import Flat, Place, Stay, WaitlistEntry


class PlaceOut(BaseModel):
    place_ref: str
    flat: str
    kind: str
    state: str


class StayOut(BaseModel):
    stay_ref: str
    person_ref: str
    place_ref: str
    place_kind: str
    starts_on: str
    planned_end: str
    ended_on: str | None


class WaitingOut(BaseModel):
    person_ref: str
    place_kind: str
    priority: int
    since: str


def build_router(runtime: ServiceRuntime) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["housing"], dependencies=[Depends(runtime.current_staff)])

    @router.get("/places", response_model=list[PlaceOut])
    async def places() -> list[PlaceOut]:
        async with runtime.sessions() as session:
            rows = (await session.exec(select(Place, Flat).join(Flat).order_by(col(Place.id)))).all()
        return [PlaceOut(place_ref=p.place_ref, flat=f.code, kind=p.kind, state=p.state) for p, f in rows]

    @router.get("/stays", response_model=list[StayOut])
    async def stays(open_only: bool = True) -> list[StayOut]:
        async with runtime.sessions() as session:
            query = select(Stay, Place).join(Place).order_by(col(Stay.id))
            if open_only:
                query = query.where(col(Stay.ended_on).is_(None))
            rows = (await session.exec(query)).all()
        return [StayOut(stay_ref=s.stay_ref, person_ref=s.person_ref, place_ref=p.place_ref, place_kind=s.place_kind,
                        starts_on=s.starts_on.isoformat(), planned_end=s.planned_end.isoformat(),
                        ended_on=s.ended_on.isoformat() if s.ended_on else None) for s, p in rows]

    @router.get("/waitlist", response_model=list[WaitingOut])
    async def waitlist() -> list[WaitingOut]:
        async with runtime.sessions() as session:
            rows = (await session.exec(select(WaitlistEntry).where(col(WaitlistEntry.left_at).is_(None))
                                       .order_by(col(WaitlistEntry.place_kind), col(WaitlistEntry.priority).desc(),
                                                 col(WaitlistEntry.since)))).all()
        return [WaitingOut(person_ref=w.person_ref, place_kind=w.place_kind, priority=w.priority,
                           since=w.since.isoformat()) for w in rows]

    return router
