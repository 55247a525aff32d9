"""Events housing publishes. Place references are codes, never addresses (rule 9).

Reasons, approvers' names and follow-up plans are staff free text: they stay in housing's store.
"""

from datetime import date
from enum import StrEnum

from .codes import ExitDestination, PlaceKind
from .envelope import Event, contract


class WaitlistExit(StrEnum):
    """Why someone left a waiting list without being admitted from it."""

    offer_refused = "offer_refused"  # refused the place offered to them
    withdrawn = "withdrawn"  # staff took them off the list (found another solution, unreachable...)


@contract("housing")
class PersonAdmitted(Event):
    stay_ref: str
    person_ref: str
    request_ref: str | None = None
    place_ref: str
    place_kind: PlaceKind
    starts_on: date
    planned_end: date
    offer_ref: str | None = None  # set when the stay starts from an accepted waiting-list offer


@contract("housing")
class PersonWaitlisted(Event):
    person_ref: str
    request_ref: str | None = None
    place_kind: PlaceKind
    position: int  # 1 = next in line for a freed place of that kind


@contract("housing")
class StayEnding(Event):
    """Sent once per stay, planned end and threshold: `days_before` is the threshold (e.g. 14 or 3)."""

    stay_ref: str
    person_ref: str
    planned_end: date
    days_before: int
    days_left: int | None = None  # days actually left when announced (less than days_before after an outage)


@contract("housing")
class PersonDischarged(Event):
    stay_ref: str
    person_ref: str
    place_ref: str
    destination: ExitDestination
    planned: bool
    safe: bool
    ended_on: date | None = None
    follow_up_planned: bool = False


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
    """A place became available: after a discharge, a move, a refused offer, a return to service or when added."""

    place_ref: str
    place_kind: PlaceKind


@contract("housing")
class PlaceOffered(Event):
    """A freed place is reserved for the next person on that kind's waiting list; staff confirm or refuse."""

    offer_ref: str
    person_ref: str
    place_ref: str
    place_kind: PlaceKind


@contract("housing")
class PersonLeftWaitlist(Event):
    person_ref: str
    place_kind: PlaceKind
    reason: WaitlistExit
    offer_ref: str | None = None
