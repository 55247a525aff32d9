"""Events housing publishes. Place references are codes, never addresses (rule 9)."""

from datetime import date

from .codes import ExitDestination, PlaceKind
from .envelope import Event, contract


@contract("housing")
class PersonAdmitted(Event):
    stay_ref: str
    person_ref: str
    request_ref: str | None = None
    place_ref: str
    place_kind: PlaceKind
    starts_on: date
    planned_end: date


@contract("housing")
class PersonWaitlisted(Event):
    person_ref: str
    request_ref: str | None = None
    place_kind: PlaceKind
    position: int


@contract("housing")
class StayEnding(Event):
    stay_ref: str
    person_ref: str
    planned_end: date
    days_before: int


@contract("housing")
class PersonDischarged(Event):
    stay_ref: str
    person_ref: str
    place_ref: str
    destination: ExitDestination
    planned: bool
    safe: bool


@contract("housing")
class StayExtended(Event):
    stay_ref: str
    person_ref: str
    previous_planned_end: date
    planned_end: date


@contract("housing")
class PersonMoved(Event):
    stay_ref: str
    person_ref: str
    from_place_ref: str
    to_place_ref: str
    place_kind: PlaceKind


@contract("housing")
class PlaceFreed(Event):
    place_ref: str
    place_kind: PlaceKind
