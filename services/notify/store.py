"""Notify's store: one row per message to send, which doubles as its delivery log."""

from datetime import UTC, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Delivery(SQLModel, table=True):
    __tablename__ = "notify_delivery"
    # A message is sent once per triggering event and recipient, however often the event arrives.
    __table_args__ = (UniqueConstraint("cause_event_id", "recipient", name="one_message_per_event_and_recipient"),)

    id: int | None = Field(default=None, primary_key=True)
    notification_ref: str = Field(max_length=32, unique=True)
    cause_event_id: str = Field(max_length=64, index=True)
    cause_event_type: str = Field(max_length=64)
    channel: str = Field(default="email", max_length=20)
    recipient: str = Field(max_length=300)
    recipient_kind: str = Field(max_length=30)
    template: str = Field(max_length=60)
    language: str = Field(max_length=2)
    context: dict = Field(default_factory=dict, sa_column=Column(JSON))
    status: str = Field(default="pending", max_length=20, index=True)
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    sent_at: datetime | None = None


TABLES = [Delivery.__table__]
