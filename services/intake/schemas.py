"""What intake's API accepts and returns."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from shared.events.codes import Channel, Need, Urgency

from .domain import Situation


class Language(StrEnum):
    fr = "fr"
    nl = "nl"
    en = "en"


class Caller(StrEnum):
    self = "self"
    on_behalf = "on_behalf"


class CadalInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fedasil_designation_ref: str | None = Field(None, max_length=60)
    lgbtqia_asylum_seeker: bool = False
    faces_discrimination: bool = False
    mental_health_compatible: bool = False
    accepts_house_rules: bool = False


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200, description="name the person wants to be called")
    date_of_birth: date | None = None
    stated_age: int | None = Field(None, ge=0, le=120)
    language: Language = Language.fr
    phone: str | None = Field(None, max_length=40, pattern=r"^\+?[0-9 ()./-]{6,40}$")
    email: EmailStr | None = None
    safe_to_leave_message: bool = False
    channel: Channel
    caller: Caller = Caller.self
    situation: Situation
    urgency: Urgency = Urgency.days
    needs: list[Need] = Field(default_factory=list, max_length=len(Need))
    notes: str | None = Field(None, max_length=4000)
    cadal: CadalInput | None = None

    @model_validator(mode="after")
    def _age_given(self) -> NewRequest:
        if self.date_of_birth is None and self.stated_age is None:
            raise ValueError("date_of_birth or stated_age is required")
        if self.date_of_birth is not None and self.date_of_birth > date.today():
            raise ValueError("date_of_birth lies in the future")
        return self


class RuleOut(BaseModel):
    rule: str
    passed: bool
    inputs: dict
    explanation: str


class RequestOut(BaseModel):
    request_ref: str
    person_ref: str
    received_at: datetime
    decision: str
    track: str
    place_kind: str | None
    rules: list[RuleOut]


class TimelineOut(BaseModel):
    event_type: str
    occurred_at: datetime
    details: dict
