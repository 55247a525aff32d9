"""Housing's store: flats (confidential addresses live only here), places, stays, waiting list.

The database itself guards the rules that must hold across replicas: one open stay per place
and per person, one open offer per place and per waiting entry, one StayEnding per stay,
planned end and threshold. Free text typed by staff (reasons, approvers, follow-up plans) lives
only in these tables and never goes into an event.
"""

from datetime import UTC, date, datetime

from sqlalchemy import Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """SQLite hands datetimes back without a zone; they were stored in UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _open(column: str):
    where = text(f"{column} IS NULL")
    return {"sqlite_where": where, "postgresql_where": where}


class Flat(SQLModel, table=True):
    __tablename__ = "housing_flat"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    address: str = Field(max_length=300)  # confidential: never leaves housing except to housing staff


class Place(SQLModel, table=True):
    __tablename__ = "housing_place"
    # Allocation takes the first vacant place of a kind: without this index SQLite walks every
    # occupied place of the kind first, so admissions slow down as the house fills.
    __table_args__ = (Index("place_by_kind_state", "kind", "state", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    place_ref: str = Field(max_length=20, unique=True, index=True)
    flat_id: int = Field(foreign_key="housing_flat.id")
    kind: str = Field(max_length=20, index=True)
    state: str = Field(default="vacant", max_length=20, index=True)
    version: int = 0  # every state change is `UPDATE ... WHERE version = read version`
    out_of_service_reason: str | None = Field(default=None, max_length=500)
    changed_at: datetime = Field(default_factory=utcnow)


class AllocationLock(SQLModel, table=True):
    """One row per kind of place. Every allocation of that kind (admission, freed place, offer)
    updates this row first, so they run one after the other across replicas: a freed place and a
    newly waitlisted person cannot miss each other, and offers follow the waiting-list order."""

    __tablename__ = "housing_allocation_lock"

    kind: str = Field(primary_key=True, max_length=20)
    version: int = 0


class Stay(SQLModel, table=True):
    __tablename__ = "housing_stay"
    __table_args__ = (
        # The database itself refuses a second open stay in a place or for a person.
        Index("one_open_stay_per_place", "place_id", unique=True, **_open("ended_on")),
        Index("one_open_stay_per_person", "person_ref", unique=True, **_open("ended_on")),
    )

    id: int | None = Field(default=None, primary_key=True)
    stay_ref: str = Field(max_length=32, unique=True)
    person_ref: str = Field(max_length=32, index=True)
    request_ref: str | None = Field(default=None, max_length=32)
    correlation_id: str | None = Field(default=None, max_length=64)
    place_id: int = Field(foreign_key="housing_place.id")
    place_kind: str = Field(max_length=20)
    starts_on: date
    planned_end: date = Field(index=True)
    ended_on: date | None = None
    version: int = 0
    admitted_by: str = Field(default="intake-decision", max_length=100)
    exit_destination: str | None = None
    exit_planned: bool | None = None
    exit_safe: bool | None = None
    follow_up: str | None = Field(default=None, max_length=2000)
    discharged_by: str | None = Field(default=None, max_length=100)


class StayExtension(SQLModel, table=True):
    __tablename__ = "housing_stay_extension"

    id: int | None = Field(default=None, primary_key=True)
    stay_id: int = Field(foreign_key="housing_stay.id", index=True)
    previous_end: date
    new_end: date
    reason: str = Field(max_length=1000)
    approver: str = Field(max_length=100)
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow)


class StayMove(SQLModel, table=True):
    __tablename__ = "housing_stay_move"

    id: int | None = Field(default=None, primary_key=True)
    stay_id: int = Field(foreign_key="housing_stay.id", index=True)
    from_place_id: int = Field(foreign_key="housing_place.id")
    to_place_id: int = Field(foreign_key="housing_place.id")
    reason: str = Field(max_length=1000)
    recorded_by: str = Field(max_length=100)
    recorded_at: datetime = Field(default_factory=utcnow)


class StayNotice(SQLModel, table=True):
    """A StayEnding announced. Inserted in the same transaction as its outbox row: the unique key
    makes a second announcement (a restart, another replica) fail instead of being sent."""

    __tablename__ = "housing_stay_notice"
    __table_args__ = (UniqueConstraint("stay_id", "planned_end", "days_before", name="one_notice_per_threshold"),)

    id: int | None = Field(default=None, primary_key=True)
    stay_id: int = Field(foreign_key="housing_stay.id")
    planned_end: date
    days_before: int
    days_left: int
    announced_on: date


class WaitlistEntry(SQLModel, table=True):
    __tablename__ = "housing_waitlist"
    __table_args__ = (
        Index("one_open_wait_per_person_kind", "person_ref", "place_kind", unique=True, **_open("left_at")),
    )

    id: int | None = Field(default=None, primary_key=True)
    entry_ref: str = Field(default="", max_length=32, index=True)
    person_ref: str = Field(max_length=32, index=True)
    request_ref: str | None = Field(default=None, max_length=32)
    correlation_id: str | None = Field(default=None, max_length=64)
    place_kind: str = Field(max_length=20, index=True)
    priority: int = 0
    since: datetime = Field(default_factory=utcnow)
    added_by: str = Field(default="intake-decision", max_length=100)
    left_at: datetime | None = None
    left_reason: str | None = Field(default=None, max_length=30)  # admitted | offer_refused | withdrawn


class Offer(SQLModel, table=True):
    """A freed place reserved for the next person in line until staff accept or refuse it."""

    __tablename__ = "housing_offer"
    __table_args__ = (
        Index("one_open_offer_per_place", "place_id", unique=True, **_open("closed_at")),
        Index("one_open_offer_per_entry", "waitlist_id", unique=True, **_open("closed_at")),
    )

    id: int | None = Field(default=None, primary_key=True)
    offer_ref: str = Field(max_length=32, unique=True)
    waitlist_id: int = Field(foreign_key="housing_waitlist.id")
    place_id: int = Field(foreign_key="housing_place.id")
    person_ref: str = Field(max_length=32)
    place_kind: str = Field(max_length=20)
    offered_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    outcome: str | None = Field(default=None, max_length=20)  # accepted | refused | withdrawn
    reason: str | None = Field(default=None, max_length=1000)
    closed_by: str | None = Field(default=None, max_length=100)


TABLES = [
    Flat.__table__, Place.__table__, AllocationLock.__table__, Stay.__table__, StayExtension.__table__,
    StayMove.__table__, StayNotice.__table__, WaitlistEntry.__table__, Offer.__table__,
]
