"""What housing's HTTP API accepts and returns: the contract the staff console is built on.

References (`P-…`, `S-…`, `PL-…`, `W-…`, `O-…`) are opaque codes. Free text typed by staff
(reasons, approvers, follow-up plans) is stored in housing and shown to staff here only.
A flat's address is filled in only for the housing and administrator roles; it is null for
everyone else.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events.codes import ExitDestination, PlaceKind, Urgency

from .domain import PlaceState

Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32,
                                       pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
PlaceRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20,
                                            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
FlatCode = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20,
                                            pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Person = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Problem(BaseModel):
    detail: str = Field(description="why the command was refused, in references and codes only")


# --- requests ---------------------------------------------------------------------

class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AdmitIn(_In):
    person_ref: Ref
    place_kind: PlaceKind | None = Field(None, description="any vacant place of this kind (give this or place_ref)")
    place_ref: PlaceRef | None = Field(None, description="this vacant place")
    request_ref: Ref | None = None


class ExtendIn(_In):
    new_end: date = Field(description="the new planned end; must be after the current one")
    reason: Reason
    approver: Person = Field(description="who approved the extension")


class MoveIn(_In):
    to_place_ref: PlaceRef = Field(description="a vacant place of the same kind")
    reason: Reason


class DischargeIn(_In):
    destination: ExitDestination
    planned: bool = Field(description="the exit was planned with the person")
    safe: bool = Field(description="the person leaves to a safe situation")
    follow_up: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)] = Field(
        description="the follow-up plan (write 'none' if there is none)")
    ended_on: date | None = Field(None, description="default today; not before the stay started, not in the future")


class RefuseOfferIn(_In):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] | None = None


class JoinWaitlistIn(_In):
    person_ref: Ref
    place_kind: PlaceKind
    urgency: Urgency = Field(Urgency.days, description="immediate, days, weeks: the line is ordered by urgency, then waiting time")
    request_ref: Ref | None = None


class FlatIn(_In):
    code: FlatCode
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class PlaceIn(_In):
    flat_code: FlatCode
    kind: PlaceKind
    place_ref: PlaceRef | None = Field(None, description="default: a new opaque PL-… reference")


class OutOfServiceIn(_In):
    reason: Reason


# --- responses ----------------------------------------------------------------------

class PlaceOut(BaseModel):
    place_ref: str
    flat: str
    kind: PlaceKind
    state: PlaceState
    stay_ref: str | None = Field(None, description="the open stay, when occupied")
    person_ref: str | None = Field(None, description="who stays there, or who the place is offered to")
    planned_end: date | None = None
    offer_ref: str | None = Field(None, description="the open offer, when reserved")
    out_of_service_reason: str | None = None


class KindCount(BaseModel):
    place_kind: PlaceKind
    total: int
    vacant: int
    reserved: int
    occupied: int
    out_of_service: int
    waiting: int | None = Field(None, description="people in line for this kind (board totals only)")


class FlatBoard(BaseModel):
    code: str
    address: str | None = Field(description="confidential: only for the housing and administrator roles, else null")
    counts: list[KindCount]
    places: list[PlaceOut]


class Board(BaseModel):
    today: date
    totals: list[KindCount]
    flats: list[FlatBoard]


class FlatOut(BaseModel):
    code: str
    address: str | None = Field(description="confidential: only for the housing and administrator roles, else null")
    places: int


class StayOut(BaseModel):
    stay_ref: str
    person_ref: str
    request_ref: str | None = None
    place_ref: str
    flat: str
    place_kind: PlaceKind
    starts_on: date
    planned_end: date
    days_left: int | None = Field(None, description="days until the planned end (negative when overdue); null once ended")
    ended_on: date | None = None


class ExtensionOut(BaseModel):
    previous_end: date
    new_end: date
    reason: str
    approver: str
    recorded_by: str
    recorded_at: datetime


class MoveOut(BaseModel):
    from_place_ref: str
    to_place_ref: str
    reason: str
    recorded_by: str
    recorded_at: datetime


class NoticeOut(BaseModel):
    planned_end: date
    days_before: int
    days_left: int
    announced_on: date


class ExitOut(BaseModel):
    destination: ExitDestination
    planned: bool
    safe: bool
    follow_up: str | None
    discharged_by: str | None


class StayDetail(StayOut):
    admitted_by: str
    extensions: list[ExtensionOut]
    moves: list[MoveOut]
    notices: list[NoticeOut] = Field(description="StayEnding announcements sent for this stay")
    exit: ExitOut | None = None


class OfferOut(BaseModel):
    offer_ref: str
    entry_ref: str
    person_ref: str
    place_ref: str
    flat: str
    place_kind: PlaceKind
    offered_at: datetime
    outcome: str | None = Field(None, description="null while open; accepted, refused or withdrawn")


class WaitingOut(BaseModel):
    entry_ref: str
    person_ref: str
    request_ref: str | None
    place_kind: PlaceKind
    urgency: Urgency
    priority: int
    since: datetime
    position: int | None = Field(description="1 = next in line for a freed place; null while holding an offer or after leaving")
    offer: OfferOut | None = None
    left_reason: str | None = None
