"""Referrals' store: the people the refuge follows, the partner directory, referrals."""

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class FollowedPerson(SQLModel, table=True):
    __tablename__ = "referrals_followed"

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, unique=True, index=True)
    since: datetime = Field(default_factory=utcnow)
    reason: str = Field(max_length=40)
    last_event: str = Field(max_length=64)


TABLES = [FollowedPerson.__table__]
