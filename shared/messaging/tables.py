"""Outbox and inbox tables, present in every service's own store."""

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class OutboxEntry(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=64)
    stream: str = Field(max_length=200)
    body: str
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = Field(default=None, index=True)


class InboxEntry(SQLModel, table=True):
    __tablename__ = "inbox"

    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=64)
    stream: str = Field(max_length=200)
    handled_at: datetime = Field(default_factory=utcnow)


MESSAGING_TABLES = [OutboxEntry.__table__, InboxEntry.__table__]
