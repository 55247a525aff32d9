"""Read side for staff: the occupancy board, stays ending, the waiting list. Queries only."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from sqlmodel import col, select

from shared.events.codes import PlaceKind, Urgency

from . import domain
from .domain import PlaceState
from .schemas import (
    Board,
    ExitOut,
    ExtensionOut,
    FlatBoard,
    FlatOut,
    KindCount,
    MoveOut,
    NoticeOut,
    OfferOut,
    PlaceOut,
    StayDetail,
    StayOut,
    WaitingOut,
)
from .store import Flat, Offer, Place, Stay, StayExtension, StayMove, StayNotice, WaitlistEntry, utc

URGENCY_OF_PRIORITY = {domain.priority_for(u): u for u in Urgency}


async def _places(session, *, kind: str | None = None, state: str | None = None) -> list[tuple[Place, Flat]]:
    query = select(Place, Flat).join(Flat).order_by(col(Flat.code), col(Place.place_ref))
    if kind:
        query = query.where(Place.kind == kind)
    if state:
        query = query.where(Place.state == state)
    return list((await session.exec(query)).all())


async def _open_stays_by_place(session) -> dict[int, Stay]:
    return {s.place_id: s for s in (await session.exec(select(Stay).where(col(Stay.ended_on).is_(None)))).all()}


async def _open_offers_by_place(session) -> dict[int, Offer]:
    return {o.place_id: o for o in (await session.exec(select(Offer).where(col(Offer.closed_at).is_(None)))).all()}


def _place_out(place: Place, flat: Flat, stay: Stay | None, offer: Offer | None) -> PlaceOut:
    return PlaceOut(place_ref=place.place_ref, flat=flat.code, kind=place.kind, state=place.state,
                    stay_ref=stay.stay_ref if stay else None,
                    person_ref=stay.person_ref if stay else (offer.person_ref if offer else None),
                    planned_end=stay.planned_end if stay else None, offer_ref=offer.offer_ref if offer else None,
                    out_of_service_reason=place.out_of_service_reason)


def _counts(places: list[PlaceOut], waiting: Counter | None = None) -> list[KindCount]:
    counts = []
    for kind in PlaceKind:
        mine = [p for p in places if p.kind == kind]
        if not mine and waiting is None:
            continue
        states = Counter(p.state for p in mine)
        counts.append(KindCount(place_kind=kind, total=len(mine), vacant=states[PlaceState.vacant],
                                reserved=states[PlaceState.reserved], occupied=states[PlaceState.occupied],
                                out_of_service=states[PlaceState.out_of_service],
                                waiting=waiting[kind.value] if waiting is not None else None))
    return counts


async def places(session, *, kind: str | None = None, state: str | None = None) -> list[PlaceOut]:
    stays, offers = await _open_stays_by_place(session), await _open_offers_by_place(session)
    return [_place_out(p, f, stays.get(p.id), offers.get(p.id)) for p, f in await _places(session, kind=kind, state=state)]


async def place(session, place_ref: str) -> PlaceOut | None:
    return next((p for p in await places(session) if p.place_ref == place_ref), None)


async def board(session, today: date, *, show_addresses: bool) -> Board:
    stays, offers = await _open_stays_by_place(session), await _open_offers_by_place(session)
    rows = await _places(session)
    flats = (await session.exec(select(Flat).order_by(col(Flat.code)))).all()
    by_flat: dict[int, list[PlaceOut]] = {f.id: [] for f in flats}
    for p, f in rows:
        by_flat[f.id].append(_place_out(p, f, stays.get(p.id), offers.get(p.id)))
    holding = select(Offer.waitlist_id).where(col(Offer.closed_at).is_(None))
    waiting = Counter((await session.exec(
        select(WaitlistEntry.place_kind).where(col(WaitlistEntry.left_at).is_(None), col(WaitlistEntry.id).not_in(holding))
    )).all())
    everything = [p for group in by_flat.values() for p in group]
    return Board(today=today, totals=_counts(everything, waiting), flats=[
        FlatBoard(code=f.code, address=f.address if show_addresses else None, counts=_counts(by_flat[f.id]),
                  places=by_flat[f.id]) for f in flats])


async def flats(session, *, show_addresses: bool) -> list[FlatOut]:
    rows = (await session.exec(select(Flat).order_by(col(Flat.code)))).all()
    sizes = Counter((await session.exec(select(Place.flat_id))).all())
    return [FlatOut(code=f.code, address=f.address if show_addresses else None, places=sizes[f.id]) for f in rows]


def _stay_out(stay: Stay, place: Place, flat: Flat, today: date) -> StayOut:
    return StayOut(stay_ref=stay.stay_ref, person_ref=stay.person_ref, request_ref=stay.request_ref,
                   place_ref=place.place_ref, flat=flat.code, place_kind=stay.place_kind, starts_on=stay.starts_on,
                   planned_end=stay.planned_end, ended_on=stay.ended_on,
                   days_left=None if stay.ended_on else domain.days_left(stay.planned_end, today))


async def stays(session, today: date, *, open_only: bool = True, ending_within: int | None = None,
                person_ref: str | None = None) -> list[StayOut]:
    query = select(Stay, Place, Flat).join(Place, col(Stay.place_id) == col(Place.id)).join(Flat)
    if open_only or ending_within is not None:
        query = query.where(col(Stay.ended_on).is_(None))
    if ending_within is not None:
        query = query.where(col(Stay.planned_end) <= today + timedelta(days=ending_within))
        query = query.order_by(col(Stay.planned_end), col(Stay.id))
    else:
        query = query.order_by(col(Stay.id))
    if person_ref:
        query = query.where(Stay.person_ref == person_ref)
    return [_stay_out(s, p, f, today) for s, p, f in (await session.exec(query)).all()]


async def stay_detail(session, stay_ref: str, today: date) -> StayDetail | None:
    row = (await session.exec(select(Stay, Place, Flat).join(Place, col(Stay.place_id) == col(Place.id)).join(Flat)
                              .where(Stay.stay_ref == stay_ref))).first()
    if row is None:
        return None
    stay, place, flat = row
    extensions = (await session.exec(select(StayExtension).where(StayExtension.stay_id == stay.id)
                                     .order_by(col(StayExtension.id)))).all()
    moves = (await session.exec(select(StayMove).where(StayMove.stay_id == stay.id).order_by(col(StayMove.id)))).all()
    refs = {p.id: p.place_ref for p in (await session.exec(select(Place))).all()}
    notices = (await session.exec(select(StayNotice).where(StayNotice.stay_id == stay.id)
                                  .order_by(col(StayNotice.planned_end), col(StayNotice.days_before).desc()))).all()
    base = _stay_out(stay, place, flat, today)
    return StayDetail(
        **base.model_dump(), admitted_by=stay.admitted_by,
        extensions=[ExtensionOut(previous_end=e.previous_end, new_end=e.new_end, reason=e.reason, approver=e.approver,
                                 recorded_by=e.recorded_by, recorded_at=utc(e.recorded_at)) for e in extensions],
        moves=[MoveOut(from_place_ref=refs[m.from_place_id], to_place_ref=refs[m.to_place_id], reason=m.reason,
                       recorded_by=m.recorded_by, recorded_at=utc(m.recorded_at)) for m in moves],
        notices=[NoticeOut(planned_end=n.planned_end, days_before=n.days_before, days_left=n.days_left,
                           announced_on=n.announced_on) for n in notices],
        exit=ExitOut(destination=stay.exit_destination, planned=stay.exit_planned, safe=stay.exit_safe,
                     follow_up=stay.follow_up, discharged_by=stay.discharged_by) if stay.ended_on else None,
    )


def _offer_out(offer: Offer, entry: WaitlistEntry, place: Place, flat: Flat) -> OfferOut:
    return OfferOut(offer_ref=offer.offer_ref, entry_ref=entry.entry_ref, person_ref=offer.person_ref,
                    place_ref=place.place_ref, flat=flat.code, place_kind=offer.place_kind,
                    offered_at=utc(offer.offered_at), outcome=offer.outcome)


async def offers(session, *, open_only: bool = True, offer_ref: str | None = None) -> list[OfferOut]:
    query = (select(Offer, WaitlistEntry, Place, Flat).join(WaitlistEntry, col(Offer.waitlist_id) == col(WaitlistEntry.id))
             .join(Place, col(Offer.place_id) == col(Place.id)).join(Flat).order_by(col(Offer.id)))
    if open_only:
        query = query.where(col(Offer.closed_at).is_(None))
    if offer_ref:
        query = query.where(Offer.offer_ref == offer_ref)
    return [_offer_out(*row) for row in (await session.exec(query)).all()]


async def waitlist(session, *, kind: str | None = None, person_ref: str | None = None) -> list[WaitingOut]:
    """Open entries by kind: people holding an offer first, then the line in the order places are offered."""
    query = select(WaitlistEntry).where(col(WaitlistEntry.left_at).is_(None))
    if kind:
        query = query.where(WaitlistEntry.place_kind == kind)
    entries = (await session.exec(query)).all()
    offered = {o.entry_ref: o for o in await offers(session)}
    result = []
    for k in PlaceKind:
        mine = sorted((e for e in entries if e.place_kind == k.value),
                      key=lambda e: (e.entry_ref not in offered,
                                     domain.line_order(domain.Waiting(e.person_ref, e.priority, utc(e.since), e.id))))
        position = 0
        for e in mine:
            offer = offered.get(e.entry_ref)
            if offer is None:
                position += 1
            if person_ref is None or e.person_ref == person_ref:
                result.append(_waiting_out(e, None if offer else position, offer))
    return result


def _waiting_out(entry: WaitlistEntry, position: int | None, offer: OfferOut | None) -> WaitingOut:
    return WaitingOut(entry_ref=entry.entry_ref, person_ref=entry.person_ref, request_ref=entry.request_ref,
                      place_kind=entry.place_kind, urgency=URGENCY_OF_PRIORITY.get(entry.priority, Urgency.weeks),
                      priority=entry.priority, since=utc(entry.since), position=position, offer=offer,
                      left_reason=entry.left_reason)


async def waiting_entry(session, entry_ref: str) -> WaitingOut | None:
    for item in await waitlist(session):
        if item.entry_ref == entry_ref:
            return item
    entry = (await session.exec(select(WaitlistEntry).where(WaitlistEntry.entry_ref == entry_ref))).first()
    return _waiting_out(entry, None, None) if entry else None
