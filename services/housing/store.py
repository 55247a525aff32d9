"""Housing's store: flats (confidential addresses live only here), places, stays, waiting list."""

from datetime import UTC, date, datetime

from sqlalchemy import Index, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Flat(SQLModel, table=True):
    __tablename__ = "housing_flat"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=20, unique=True)
    address: str = Field(max_length=300)  # confidential: never leaves housing


class Place(SQLModel, table=True):
    __tablename__ = "housing_place"

    id: int | None = Field(default=None, primary_key=True)
    place_ref: str = Field(max_length=20, unique=True, index=True)
    flat_id: int = Field(foreign_key="housing_flat.id")
    kind: str = Field(max_length=20, index=True)
    state: str = Field(default="vacant", max_length=20, index=True)
    version: int = 0


class Stay(SQLModel, table=True):
    __tablename__ = "housing_stay"
    __table_args__ = (
        # The database itself refuses a second open stay in a place or for a person.
        Index("one_open_stay_per_place", "place_id", unique=True,
              sqlite_where=text("ended_on IS NULL"), postgresql_where=text("ended_on IS NULL")),
        Index("one_open_stay_per_person", "person_ref", unique=True,
              sqlite_where=text("ended_on IS NULL"), postgresql_where=text("ended_on IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    stay_ref: str = Field(max_length=32, unique=True)
    person_ref: str = Field(max_length=32, index=True)
    request_ref: str | None = Field(default=None, max_length=32)
    place_id: int = Field(foreign_key="housing_place.id")
    place_kind: str = Field(max_length=20)
    starts_on: date
    planned_end: date
    ended_on: date | None = None
    exit_destination: str | None = None
    exit_planned: bool | None = None
    exit_safe: bool | None = None


class WaitlistEntry(SQLModel, table=True):
    __tablename__ = "housing_waitlist"
    __table_args__ = (
        Index("one_open_wait_per_person_kind", "person_ref", "place_kind", unique=True,
              sqlite_where=text("left_at IS NULL"), postgresql_where=text("left_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, index=True)
    request_ref: str | None = Field(default=None, max_length=32)
    place_kind: str = Field(max_length=20, index=True)
    priority: int = 0
    since: datetime = Field(default_factory=utcnow)
    left_at: datetime | None = None
    left_reason: str | None = Field(default=None, max_length=30)


TABLES = [Flat.__table__, Place.__table__, Stay.__table__, WaitlistEntry.__table__]
