"""Intake's own store: case files (personal data stays here), requests, assessments, timeline."""

from datetime import UTC, date, datetime

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class CaseFile(SQLModel, table=True):
    __tablename__ = "intake_case_file"

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, unique=True, index=True)
    name: str = Field(max_length=200)
    date_of_birth: date | None = None
    stated_age: int | None = None
    language: str = Field(max_length=2)
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=200)
    safe_to_leave_message: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class HelpRequest(SQLModel, table=True):
    __tablename__ = "intake_request"

    id: int | None = Field(default=None, primary_key=True)
    request_ref: str = Field(max_length=32, unique=True, index=True)
    person_ref: str = Field(max_length=32, index=True)
    channel: str = Field(max_length=20)
    caller: str = Field(max_length=20)
    situation: str = Field(max_length=30)
    urgency: str = Field(max_length=20)
    needs: list = Field(default_factory=list, sa_column=Column(JSON))
    notes: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    recorded_by: str = Field(default="api", max_length=100)


class AssessmentRecord(SQLModel, table=True):
    __tablename__ = "intake_assessment"

    id: int | None = Field(default=None, primary_key=True)
    request_ref: str = Field(max_length=32, index=True)
    decision: str = Field(max_length=20)
    track: str = Field(max_length=20)
    place_kind: str | None = Field(default=None, max_length=20)
    rules: list = Field(default_factory=list, sa_column=Column(JSON))
    decided_at: datetime = Field(default_factory=utcnow)
    decided_by: str = Field(default="rules", max_length=100)
    override_reason: str | None = None


class TimelineEntry(SQLModel, table=True):
    __tablename__ = "intake_timeline"

    id: int | None = Field(default=None, primary_key=True)
    person_ref: str = Field(max_length=32, index=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=64)
    occurred_at: datetime
    details: dict = Field(default_factory=dict, sa_column=Column(JSON))


TABLES = [CaseFile.__table__, HelpRequest.__table__, AssessmentRecord.__table__, TimelineEntry.__table__]
