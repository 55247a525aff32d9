"""Housing's HTTP API for the staff console: thin routes over views.py (reads) and handlers.py (commands).

Every route needs a signed-in staff member (401 otherwise) and a role that access.ACCESS allows for
it (403, always the same body): reading for intake workers, coordinators and housing staff (a
person's stays also for psychologists); running stays and the waiting list for housing staff and
coordinators; the inventory (flats, places) for housing staff; administrators may do everything.
Addresses appear only for the housing and administrator roles.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError

from shared.auth import Role, Staff, require_roles
from shared.events.codes import PlaceKind
from shared.messaging import ServiceRuntime
from shared.web import enforce_access

from . import views
from .access import ACCESS
from .domain import Conflict, InvalidInput, NotFound, PlaceState
from .handlers import Housing
from .schemas import (
    AdmitIn,
    Board,
    DischargeIn,
    ExtendIn,
    FlatIn,
    FlatOut,
    JoinWaitlistIn,
    MoveIn,
    OfferOut,
    OutOfServiceIn,
    PlaceIn,
    PlaceOut,
    Problem,
    RefuseOfferIn,
    StayDetail,
    StayOut,
    WaitingOut,
)

ADDRESS_ROLES = (Role.housing, Role.administrator)
REFUSALS = {
    404: {"model": Problem, "description": "no such reference"},
    409: {"model": Problem, "description": "the rules or the current state refuse it (the message says why)"},
    403: {"model": Problem, "description": "not allowed for your role"},
}


def build_router(runtime: ServiceRuntime, housing: Housing) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(enforce_access(runtime.current_staff, ACCESS))],
                       responses={401: {"model": Problem, "description": "sign-in required"}})
    manage = require_roles(runtime.current_staff, Role.housing, Role.social_coordinator)
    inventory = require_roles(runtime.current_staff, Role.housing)

    async def run(command: Callable[..., Awaitable[Any]], **kwargs) -> Any:
        try:
            async with runtime.uow() as uow:
                result = await command(uow, **kwargs)
                await uow.commit()
                return result
        except NotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except Conflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except InvalidInput as exc:
            raise RequestValidationError([{"loc": ("body", exc.field), "msg": exc.reason, "type": "value_error"}]) from None
        except IntegrityError:  # another replica or console changed the same place or stay meanwhile
            raise HTTPException(status.HTTP_409_CONFLICT, "changed meanwhile; reload and try again") from None

    async def stay_view(stay_ref: str) -> StayDetail:
        async with runtime.sessions() as session:
            return await views.stay_detail(session, stay_ref, housing.today())

    # --- views ------------------------------------------------------------------------

    @router.get("/board", response_model=Board, tags=["views"], summary="Occupancy board by flat and kind of place")
    async def board(staff: Staff = Depends(runtime.current_staff)) -> Board:
        """Every flat with its places (state, who stays or is offered the place) and counts per kind;
        `totals` also counts the people waiting per kind. `address` is null unless your role is
        housing or administrator."""
        async with runtime.sessions() as session:
            return await views.board(session, housing.today(), show_addresses=staff.has(*ADDRESS_ROLES))

    @router.get("/places", response_model=list[PlaceOut], tags=["views"], summary="Places, optionally by kind and state")
    async def places(kind: PlaceKind | None = None, state: PlaceState | None = None) -> list[PlaceOut]:
        async with runtime.sessions() as session:
            return await views.places(session, kind=kind.value if kind else None, state=state.value if state else None)

    @router.get("/flats", response_model=list[FlatOut], tags=["views"], summary="Flats (addresses for housing staff only)")
    async def flats(staff: Staff = Depends(runtime.current_staff)) -> list[FlatOut]:
        async with runtime.sessions() as session:
            return await views.flats(session, show_addresses=staff.has(*ADDRESS_ROLES))

    @router.get("/stays", response_model=list[StayOut], tags=["views"], summary="Stays (open ones by default)")
    async def stays(open_only: bool = True, person_ref: str | None = Query(None, max_length=32)) -> list[StayOut]:
        async with runtime.sessions() as session:
            return await views.stays(session, housing.today(), open_only=open_only, person_ref=person_ref)

    @router.get("/stays/ending", response_model=list[StayOut], tags=["views"],
                summary="Open stays whose planned end falls within the next days (overdue ones included)")
    async def stays_ending(within_days: int = Query(30, ge=0, le=366)) -> list[StayOut]:
        """Sorted by planned end, soonest (or most overdue) first."""
        async with runtime.sessions() as session:
            return await views.stays(session, housing.today(), ending_within=within_days)

    @router.get("/stays/{stay_ref}", response_model=StayDetail, tags=["views"], responses=REFUSALS,
                summary="One stay with its extensions, moves, StayEnding notices and exit")
    async def stay(stay_ref: str) -> StayDetail:
        found = await stay_view(stay_ref)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no stay {stay_ref}")
        return found

    @router.get("/waitlist", response_model=list[WaitingOut], tags=["views"], summary="The waiting list, in order")
    async def waitlist(place_kind: PlaceKind | None = None,
                       person_ref: str | None = Query(None, max_length=32)) -> list[WaitingOut]:
        """Per kind: people holding an offer first, then the line in the order freed places are
        offered (urgency immediate > days > weeks, then longest waiting). With `person_ref`, only
        that person's entries (their position stays their position in the whole line)."""
        async with runtime.sessions() as session:
            return await views.waitlist(session, kind=place_kind.value if place_kind else None, person_ref=person_ref)

    @router.get("/offers", response_model=list[OfferOut], tags=["views"], summary="Open offers waiting for staff")
    async def offers() -> list[OfferOut]:
        async with runtime.sessions() as session:
            return await views.offers(session)

    # --- stays ------------------------------------------------------------------------

    @router.post("/stays", response_model=StayDetail, status_code=201, tags=["stays"], responses=REFUSALS,
                 summary="Admit a person straight into a vacant place")
    async def admit(body: AdmitIn, staff: Staff = Depends(manage)) -> StayDetail:
        """Give `place_ref` for that vacant place, or `place_kind` for any vacant place of that kind.
        The stay starts today and its planned end is three calendar months later. Emits PersonAdmitted.
        409 when the person already has an open stay or holds an offer, or no place is vacant
        (then put them on the waiting list)."""
        stay = await run(housing.admit, person_ref=body.person_ref, place_kind=body.place_kind, place_ref=body.place_ref,
                         request_ref=body.request_ref, staff=staff.username)
        return await stay_view(stay.stay_ref)

    @router.post("/stays/{stay_ref}/extend", response_model=StayDetail, tags=["stays"], responses=REFUSALS,
                 summary="Extend a stay: new end date, reason and approver")
    async def extend(stay_ref: str, body: ExtendIn, staff: Staff = Depends(manage)) -> StayDetail:
        """Records the reason, the approver and who recorded it (kept in housing only). Emits
        StayExtended; StayEnding notices are announced again for the new planned end."""
        await run(housing.extend, stay_ref=stay_ref, new_end=body.new_end, reason=body.reason, approver=body.approver,
                  staff=staff.username)
        return await stay_view(stay_ref)

    @router.post("/stays/{stay_ref}/move", response_model=StayDetail, tags=["stays"], responses=REFUSALS,
                 summary="Move a person to another vacant place of the same kind")
    async def move(stay_ref: str, body: MoveIn, staff: Staff = Depends(manage)) -> StayDetail:
        """The stay keeps its dates. Emits PersonMoved, then PlaceFreed for the old place, which is
        offered to the next person waiting for that kind (PlaceOffered)."""
        await run(housing.move, stay_ref=stay_ref, to_place_ref=body.to_place_ref, reason=body.reason,
                  staff=staff.username)
        return await stay_view(stay_ref)

    @router.post("/stays/{stay_ref}/discharge", response_model=StayDetail, tags=["stays"], responses=REFUSALS,
                 summary="End a stay with its exit outcome")
    async def discharge(stay_ref: str, body: DischargeIn, staff: Staff = Depends(manage)) -> StayDetail:
        """Destination, whether the exit was planned and safe, and the follow-up plan (kept in housing
        only). Emits PersonDischarged and PlaceFreed; the place is then offered to the next person
        waiting for that kind (PlaceOffered)."""
        await run(housing.discharge, stay_ref=stay_ref, destination=body.destination, planned=body.planned,
                  safe=body.safe, follow_up=body.follow_up, ended_on=body.ended_on, staff=staff.username)
        return await stay_view(stay_ref)

    # --- waiting list and offers ------------------------------------------------------

    @router.post("/waitlist", response_model=WaitingOut, status_code=201, tags=["waiting list"], responses=REFUSALS,
                 summary="Put a person on the waiting list for a kind of place")
    async def join(body: JoinWaitlistIn, staff: Staff = Depends(manage)) -> WaitingOut:
        """A person staying in one kind of place may wait for another kind (e.g. post-shelter).
        If a place of that kind is vacant, it is offered at once. Emits PersonWaitlisted."""
        entry = await run(housing.join_waitlist, person_ref=body.person_ref, place_kind=body.place_kind,
                          urgency=body.urgency, request_ref=body.request_ref, staff=staff.username)
        async with runtime.sessions() as session:
            return await views.waiting_entry(session, entry.entry_ref)

    @router.post("/waitlist/{entry_ref}/leave", response_model=WaitingOut, tags=["waiting list"], responses=REFUSALS,
                 summary="Take a person off the waiting list")
    async def leave(entry_ref: str, staff: Staff = Depends(manage)) -> WaitingOut:
        """An offer they hold is withdrawn and the place goes to the next in line. Emits PersonLeftWaitlist."""
        await run(housing.leave_waitlist, entry_ref=entry_ref, staff=staff.username)
        async with runtime.sessions() as session:
            return await views.waiting_entry(session, entry_ref)

    @router.post("/offers/{offer_ref}/accept", response_model=StayDetail, status_code=201, tags=["waiting list"],
                 responses=REFUSALS, summary="The person takes the offered place: the stay starts")
    async def accept(offer_ref: str, staff: Staff = Depends(manage)) -> StayDetail:
        """Emits PersonAdmitted (with offer_ref). 409 if the person still has an open stay elsewhere:
        discharge it first."""
        stay = await run(housing.accept_offer, offer_ref=offer_ref, staff=staff.username)
        return await stay_view(stay.stay_ref)

    @router.post("/offers/{offer_ref}/refuse", response_model=OfferOut, tags=["waiting list"], responses=REFUSALS,
                 summary="The person turns the offered place down")
    async def refuse(offer_ref: str, body: RefuseOfferIn | None = None, staff: Staff = Depends(manage)) -> OfferOut:
        """The person leaves that waiting list (PersonLeftWaitlist, reason offer_refused); the place
        is offered to the next in line (PlaceOffered) or becomes vacant (PlaceFreed)."""
        await run(housing.refuse_offer, offer_ref=offer_ref, reason=body.reason if body else None, staff=staff.username)
        async with runtime.sessions() as session:
            return (await views.offers(session, open_only=False, offer_ref=offer_ref))[0]

    # --- inventory --------------------------------------------------------------------

    @router.post("/flats", response_model=FlatOut, status_code=201, tags=["inventory"], responses=REFUSALS,
                 summary="Add a flat (housing role)")
    async def add_flat(body: FlatIn, staff: Staff = Depends(inventory)) -> FlatOut:
        flat = await run(housing.add_flat, code=body.code, address=body.address, staff=staff.username)
        return FlatOut(code=flat.code, address=flat.address, places=0)

    @router.post("/places", response_model=PlaceOut, status_code=201, tags=["inventory"], responses=REFUSALS,
                 summary="Add a place to a flat (housing role)")
    async def add_place(body: PlaceIn, staff: Staff = Depends(inventory)) -> PlaceOut:
        """The new place is vacant (PlaceFreed) and offered at once to the next person waiting for its kind."""
        place = await run(housing.add_place, flat_code=body.flat_code, kind=body.kind, place_ref=body.place_ref,
                          staff=staff.username)
        return await place_view(place.place_ref)

    @router.post("/places/{place_ref}/out-of-service", response_model=PlaceOut, tags=["inventory"], responses=REFUSALS,
                 summary="Take a vacant place out of service (housing role)")
    async def out_of_service(place_ref: str, body: OutOfServiceIn, staff: Staff = Depends(inventory)) -> PlaceOut:
        """Only a vacant place: discharge or move its occupant, or settle its offer, first (409 otherwise)."""
        await run(housing.take_out_of_service, place_ref=place_ref, reason=body.reason, staff=staff.username)
        return await place_view(place_ref)

    @router.post("/places/{place_ref}/back-in-service", response_model=PlaceOut, tags=["inventory"], responses=REFUSALS,
                 summary="Bring a place back into service (housing role)")
    async def back_in_service(place_ref: str, staff: Staff = Depends(inventory)) -> PlaceOut:
        """The place becomes vacant (PlaceFreed) and is offered to the next person waiting for its kind."""
        await run(housing.bring_back_into_service, place_ref=place_ref, staff=staff.username)
        return await place_view(place_ref)

    async def place_view(place_ref: str) -> PlaceOut:
        async with runtime.sessions() as session:
            return await views.place(session, place_ref)

    return router

