"""Notify's store: rules (who receives what), partner recipients, a projection of consents, and one
row per message to send, which with its attempts is the delivery log. References and codes only:
notify holds no personal data about the people the refuge helps."""

from datetime import UTC, date, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Rule(SQLModel, table=True):
    """An event becomes messages: staff change these through the API, no deploy needed."""

    __tablename__ = "notify_rule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=80, unique=True)
    event_type: str = Field(max_length=64, index=True)
    audience: str = Field(max_length=30)
    channel: str = Field(default="email", max_length=10)
    template: str = Field(max_length=60)
    language: str | None = Field(default=None, max_length=2)  # None: the recipient's language
    timing: str = Field(default="immediate", max_length=20)
    when: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    enabled: bool = True
    updated_at: datetime = Field(default_factory=utcnow)
    updated_by: str = Field(default="seed", max_length=80)


class Partner(SQLModel, table=True):
    """How to reach a partner organisation; `partner_ref` is referrals' opaque reference."""

    __tablename__ = "notify_partner"

    partner_ref: str = Field(primary_key=True, max_length=64)
    email: str | None = Field(default=None, max_length=300)
    webhook_url: str | None = Field(default=None, max_length=500)
    webhook_secret: str | None = Field(default=None, max_length=200)
    language: str = Field(default="fr", max_length=2)
    subscriptions: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = True
    updated_at: datetime = Field(default_factory=utcnow)


class Consent(SQLModel, table=True):
    """Projection of intake's ConsentGiven / ConsentWithdrawn: which partner may see whose references."""

    __tablename__ = "notify_consent"

    consent_ref: str = Field(primary_key=True, max_length=64)
    person_ref: str = Field(max_length=64, index=True)
    partner_ref: str = Field(max_length=64)
    purpose: str = Field(max_length=80)
    expires_on: date | None = None
    withdrawn: bool = False
    updated_at: datetime = Field(default_factory=utcnow)


class Delivery(SQLModel, table=True):
    __tablename__ = "notify_delivery"
    # A message is sent once per triggering event, recipient and channel, however often the event arrives.
    __table_args__ = (
        UniqueConstraint("cause_event_id", "recipient", "channel", name="one_message_per_event_recipient_channel"),
    )

    id: int | None = Field(default=None, primary_key=True)
    notification_ref: str = Field(max_length=32, unique=True)
    cause_event_id: str = Field(max_length=80, index=True)
    cause_event_type: str = Field(max_length=64, index=True)
    correlation_id: str | None = Field(default=None, max_length=64)
    rule_id: int | None = None
    audience: str = Field(max_length=30)
    recipient: str = Field(max_length=100)  # "staff:<role>" or "partner:<partner_ref>"
    partner_ref: str | None = Field(default=None, max_length=64, index=True)
    person_ref: str | None = Field(default=None, max_length=64, index=True)
    channel: str = Field(default="email", max_length=10)
    template: str = Field(max_length=60)
    language: str = Field(max_length=2)
    context: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=20, index=True)
    attempts: int = 0
    attempt_budget_from: int = 0  # attempts before the last manual retry
    last_error: str | None = Field(default=None, max_length=300)
    reason_code: str | None = Field(default=None, max_length=40)
    personal_data_shared: bool = False
    digest_ref: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow)
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    claimed_at: datetime | None = None
    claim_token: str | None = Field(default=None, max_length=32)
    sent_at: datetime | None = None
    failed_at: datetime | None = None


class Attempt(SQLModel, table=True):
    """One try at handing a message over: when, how long, and what came back (codes, never content)."""

    __tablename__ = "notify_attempt"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(index=True)
    number: int
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    duration_ms: int | None = None
    outcome: str = Field(default="in_flight", max_length=20)  # in_flight sent temporary permanent interrupted
    detail: str | None = Field(default=None, max_length=200)
    retry_at: datetime | None = None


TABLES = [Rule.__table__, Partner.__table__, Consent.__table__, Delivery.__table__, Attempt.__table__]
