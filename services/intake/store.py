"""Intake's own store: case files (personal data stays here), requests, assessments, follow-ups,
the timeline built from other services' events, and staff accounts."""

from datetime import UTC, date, datetime

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseFile(SQLModel, table=True):
    """One person, however many times they call."""

    __tablename__ = "intake_case_file"

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, unique=True, index=True)
    # Name, date of birth, phone and e-mail, sealed with the person's own data key (keys.Vault).
    sealed: str | None = Field(default=None, sa_column=Column(Text))
    stated_age: int | None = None
    language: str = Field(max_length=8)
    safe_to_leave_message: bool = False
    preferred_contact: str = Field(default="phone", max_length=20)
    # Keyed hashes (HMAC) of the normalised name, phone and e-mail, to recognise a person who calls
    # again (domain.likely_matches), and of the name's words and their beginnings, to search.
    name_key: str = Field(default="", max_length=200, index=True)
    phone_key: str | None = Field(default=None, max_length=20, index=True)
    email_key: str | None = Field(default=None, max_length=320, index=True)
    name_tokens: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(default="api", max_length=100)
    updated_at: datetime = Field(default_factory=utcnow)
    # Set when the person's data was erased (Art. 17): the row stays as a tombstone holding only
    # the reference, so the anonymous public counters do not change.
    erased_at: datetime | None = Field(default=None, index=True)


class HelpRequest(SQLModel, table=True):
    """One call for help, from any channel."""

    __tablename__ = "intake_request"

    id: int | None = Field(default=None, primary_key=True)
    request_ref: str = Field(max_length=32, unique=True, index=True)
    person_ref: str = Field(max_length=32, index=True)
    channel: str = Field(max_length=20)
    caller: str = Field(max_length=20)
    # Caller's name and organisation, notes and the CADAL criteria, sealed with the person's key.
    sealed: str | None = Field(default=None, sa_column=Column(Text))
    situation: str = Field(max_length=30)
    urgency: str = Field(max_length=20)
    needs: list = Field(default_factory=list, sa_column=Column(JSON))
    received_at: datetime = Field(default_factory=utcnow, index=True)
    recorded_by: str = Field(default="api", max_length=100)
    # Open until a staff member decides a case the rules could not settle.
    needs_review: bool = Field(default=False, index=True)
    # The next follow-up (a minor's referral, for one); None once nothing more is planned.
    follow_up_on: date | None = Field(default=None, index=True)


class AssessmentRecord(SQLModel, table=True):
    """Every decision taken on a request, the rules' first and each staff decision after; the
    latest is the one in force."""

    __tablename__ = "intake_assessment"

    id: int | None = Field(default=None, primary_key=True)
    request_ref: str = Field(max_length=32, index=True)
    decision: str = Field(max_length=20)
    track: str = Field(max_length=20)
    place_kind: str | None = Field(default=None, max_length=20)
    rules: list = Field(default_factory=list, sa_column=Column(JSON))
    needs_review: bool = False
    refer_to: str | None = Field(default=None, max_length=40)
    follow_up_on: date | None = None
    decided_at: datetime = Field(default_factory=utcnow)
    decided_by: str = Field(default="rules", max_length=100)
    # The override reason, sealed with the person's key.
    sealed: str | None = Field(default=None, sa_column=Column(Text))


class FollowUp(SQLModel, table=True):
    __tablename__ = "intake_follow_up"

    id: int | None = Field(default=None, primary_key=True)
    request_ref: str = Field(max_length=32, index=True)
    done_at: datetime = Field(default_factory=utcnow)
    done_by: str = Field(max_length=100)
    # The note, sealed with the person's key.
    sealed: str | None = Field(default=None, sa_column=Column(Text))
    next_follow_up_on: date | None = None


class TimelineEntry(SQLModel, table=True):
    __tablename__ = "intake_timeline"

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, index=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64, index=True)
    occurred_at: datetime
    details: dict = Field(default_factory=dict, sa_column=Column(JSON))


class StaffAccount(SQLModel, table=True):
    """A staff member who may sign in; created from the command line (services.intake.accounts)."""

    __tablename__ = "intake_staff_account"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True, index=True)
    password_hash: str = Field(max_length=300)
    roles: list = Field(default_factory=list, sa_column=Column(JSON))
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    last_sign_in_at: datetime | None = None


class Consent(SQLModel, table=True):
    """The person agreed that a partner may receive their data for a purpose (rule 8), until
    `expires_on` or until withdrawn."""

    __tablename__ = "intake_consent"

    id: int | None = Field(default=None, primary_key=True)
    consent_ref: str = Field(max_length=32, unique=True, index=True)
    person_ref: str = Field(max_length=32, index=True)
    partner_ref: str = Field(max_length=64)
    purpose: str = Field(max_length=80)
    expires_on: date | None = None
    given_at: datetime = Field(default_factory=utcnow)
    given_by: str = Field(max_length=100)
    withdrawn_at: datetime | None = None
    withdrawn_by: str | None = Field(default=None, max_length=100)


class Erasure(SQLModel, table=True):
    """An erasure request (Art. 17): who asked, when and why. The reason stays here, never on the broker."""

    __tablename__ = "intake_erasure"

    id: int | None = Field(default=None, primary_key=True)
    erasure_ref: str = Field(max_length=32, unique=True, index=True)
    person_ref: str = Field(max_length=32, index=True)
    requested_at: datetime = Field(default_factory=utcnow)
    requested_by: str = Field(max_length=100)
    reason: str = Field(max_length=500)
    records_erased: int = 0


class ErasureConfirmation(SQLModel, table=True):
    """Another service's ErasureConfirmed: it erased what it held about the person."""

    __tablename__ = "intake_erasure_confirmation"
    __table_args__ = (UniqueConstraint("erasure_ref", "service"),)

    id: int | None = Field(default=None, primary_key=True)
    erasure_ref: str = Field(max_length=32, index=True)
    service: str = Field(max_length=40)
    records_erased: int = 0
    confirmed_at: datetime
    event_id: str = Field(max_length=64)


class AuditEntry(SQLModel, table=True):
    """Who read or changed which case file, when and through which route: references only.
    Append-only; each entry's hash covers the previous entry's hash and its own content."""

    __tablename__ = "intake_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str = Field(max_length=100)
    action: str = Field(max_length=10)
    route: str = Field(max_length=200)
    person_ref: str | None = Field(default=None, max_length=32, index=True)
    request_ref: str | None = Field(default=None, max_length=32)
    other_ref: str | None = Field(default=None, max_length=32)
    status: int = 0
    previous_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class SignInFailure(SQLModel, table=True):
    """A refused sign-in, by user name and by client address (both hashed), to slow down guessing."""

    __tablename__ = "intake_sign_in_failure"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, index=True)
    at: datetime = Field(default_factory=utcnow, index=True)


class PersonKey(SQLModel, table=True):
    """A person's data key, wrapped by the master key ring; deleting it erases the person for good.
    Kept in a store of its own (INTAKE_KEYS_DATABASE_URL), so it is not in TABLES."""

    __tablename__ = "intake_person_key"

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, unique=True, index=True)
    wrapped_key: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


TABLES = [
    CaseFile.__table__, HelpRequest.__table__, AssessmentRecord.__table__, FollowUp.__table__,
    TimelineEntry.__table__, StaffAccount.__table__, Consent.__table__, Erasure.__table__,
    ErasureConfirmation.__table__, AuditEntry.__table__, SignInFailure.__table__,
]

