"""Referrals' store: the partner directory, the people the refuge follows (references and codes
only: referrals holds no personal data), their open needs, the consents intake recorded,
referrals and every change of their status."""

from datetime import UTC, date, datetime

from sqlalchemy import JSON, Column, UniqueConstraint
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


class Partner(SQLModel, table=True):
    """One organisation of the directory, kept as its HSDS 3 document."""

    __tablename__ = "referrals_partner"

    id: int | None = Field(default=None, primary_key=True)
    partner_ref: str = Field(max_length=64, unique=True, index=True)  # the HSDS organisation id
    name: str = Field(max_length=300)
    document: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


class PersonNeed(SQLModel, table=True):
    """A need recorded in the case file (from RequestAssessed): the codes only."""

    __tablename__ = "referrals_person_need"
    __table_args__ = (UniqueConstraint("person_ref", "need", name="uq_referrals_person_need"),)

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, index=True)
    need: str = Field(max_length=40)
    request_ref: str | None = Field(default=None, max_length=32)
    recorded_at: datetime = Field(default_factory=utcnow)


class Consent(SQLModel, table=True):
    """Referrals' own copy of the consents intake records (ConsentGiven / ConsentWithdrawn)."""

    __tablename__ = "referrals_consent"

    id: int | None = Field(default=None, primary_key=True)
    consent_ref: str = Field(max_length=64, unique=True, index=True)
    person_ref: str = Field(max_length=32, index=True)
    partner_ref: str = Field(max_length=64)
    purpose: str = Field(max_length=80)
    expires_on: date | None = None
    given_at: datetime | None = None
    withdrawn_at: datetime | None = None


class Referral(SQLModel, table=True):
    __tablename__ = "referrals_referral"

    id: int | None = Field(default=None, primary_key=True)
    referral_ref: str = Field(max_length=32, unique=True, index=True)
    person_ref: str = Field(max_length=32, index=True)
    partner_ref: str = Field(max_length=64, index=True)
    service_ref: str | None = Field(default=None, max_length=64)
    category: str = Field(max_length=40)
    origin: str = Field(max_length=20)  # staff | minor_request | stay_ending
    cause_ref: str | None = Field(default=None, max_length=32)  # the request or stay that caused it
    status: str = Field(default="pending", max_length=20, index=True)
    share_requested: bool = False  # staff asked to share contact details (subject to consent)
    consent_ref: str | None = Field(default=None, max_length=64)  # consent on record when it was made
    override_reason: str | None = Field(default=None, max_length=500)
    override_by: str | None = Field(default=None, max_length=100)
    override_at: datetime | None = None
    made_by: str = Field(max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    respond_by: datetime
    updated_at: datetime = Field(default_factory=utcnow)
    outcome: str | None = Field(default=None, max_length=20)
    reason_code: str | None = Field(default=None, max_length=40)
    link_nonce: str = Field(max_length=64)  # in every partner link; a new nonce cancels old links


class ReferralChange(SQLModel, table=True):
    """The audit trail of a referral: who moved it from which status to which, and why (codes)."""

    __tablename__ = "referrals_referral_change"

    id: int | None = Field(default=None, primary_key=True)
    referral_ref: str = Field(max_length=32, index=True)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str = Field(max_length=20)
    actor_kind: str = Field(max_length=20)  # staff | partner | system
    actor: str = Field(max_length=100)
    reason_code: str | None = Field(default=None, max_length=40)
    outcome: str | None = Field(default=None, max_length=20)
    at: datetime = Field(default_factory=utcnow)


class PageNonce(SQLModel, table=True):
    """One per partner page shown: a form posted with it works once (no replay, no CSRF)."""

    __tablename__ = "referrals_page_nonce"

    nonce: str = Field(primary_key=True, max_length=64)
    referral_ref: str = Field(max_length=32, index=True)
    issued_at: datetime = Field(default_factory=utcnow)
    used_at: datetime | None = None
    action: str | None = Field(default=None, max_length=20)


TABLES = [
    FollowedPerson.__table__, Partner.__table__, PersonNeed.__table__, Consent.__table__,
    Referral.__table__, ReferralChange.__table__, PageNonce.__table__,
]
