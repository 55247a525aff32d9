"""What intake's API accepts and returns."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, EmailStr, Field, ValidationInfo, field_validator

from shared.events.codes import Channel, Decision, Need, PlaceKind, Urgency

from .domain import Situation

# Stated as patterns so that the OpenAPI document says what the API refuses.
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
Line = Annotated[str, Field(pattern=ONE_LINE)]
Text = Annotated[str, Field(pattern=NO_CONTROL)]


def _iso_day(value):
    # A bare number is not a day (pydantic would read it as a Unix timestamp).
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("give a date as YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_day)]
PERSON_REF = r"^P-[0-9a-f]{12}$"
REQUEST_REF = r"^R-[0-9a-f]{12}$"
PersonRef = Annotated[str, Field(pattern=PERSON_REF, description="a case file's reference")]
EARLIEST_BIRTH = date(1900, 1, 1)


class Language(StrEnum):
    """Languages a person may ask to be spoken to in (staff's console speaks fr, nl and en)."""

    fr = "fr"
    nl = "nl"
    en = "en"
    ar = "ar"
    es = "es"
    pt = "pt"
    ru = "ru"
    tr = "tr"
    fa = "fa"


class Caller(StrEnum):
    self = "self"
    on_behalf = "on_behalf"


class ContactMethod(StrEnum):
    phone = "phone"
    email = "email"
    through_caller = "through_caller"
    in_person = "in_person"


class CadalInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    fedasil_designation_ref: Line | None = Field(None, max_length=60)
    lgbtqia_asylum_seeker: bool = False
    faces_discrimination: bool = False
    mental_health_compatible: bool = False
    accepts_house_rules: bool = False


class NewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    person_ref: PersonRef | None = Field(None, description="link to this existing case file (after staff confirmed the match)")
    name: Line = Field(min_length=1, max_length=200, description="name the person wants to be called")
    date_of_birth: Day | None = None
    stated_age: int | None = Field(None, ge=0, le=120, validate_default=True,
                                   description="required when the date of birth is not known")
    language: Language = Language.fr
    phone: str | None = Field(None, max_length=40, pattern=r"^\+?[0-9 ()./-]{6,40}$")
    email: EmailStr | None = Field(None, max_length=320)
    safe_to_leave_message: bool = False
    preferred_contact: ContactMethod = Field(ContactMethod.phone, validate_default=True)
    channel: Channel
    caller: Caller = Caller.self
    caller_name: Line | None = Field(None, max_length=200, description="who called on the person's behalf")
    caller_organisation: Line | None = Field(None, max_length=200)
    situation: Situation
    urgency: Urgency = Urgency.days
    needs: list[Need] = Field(default_factory=list, max_length=len(Need))
    notes: Text | None = Field(None, max_length=4000)
    cadal: CadalInput | None = Field(None, validate_default=True,
                                     description="the five CADAL criteria; only for situation asylum_reception")

    @field_validator("date_of_birth")
    @classmethod
    def _plausible_birth(cls, value: date | None) -> date | None:
        if value is not None and value > date.today():
            raise ValueError("lies in the future")
        if value is not None and value < EARLIEST_BIRTH:
            raise ValueError("is before 1900")
        return value

    @field_validator("stated_age")
    @classmethod
    def _age_given(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None and "date_of_birth" in info.data and info.data["date_of_birth"] is None:
            raise ValueError("give a date of birth or a stated age")
        return value

    @field_validator("preferred_contact")
    @classmethod
    def _contact_reachable(cls, value: ContactMethod, info: ValidationInfo) -> ContactMethod:
        if value is ContactMethod.phone and "phone" in info.data and not info.data["phone"] \
                and "email" in info.data and info.data["email"]:
            return ContactMethod.email  # only an e-mail address was given: that is the way to reach them
        if value is ContactMethod.email and "email" in info.data and not info.data["email"]:
            raise ValueError("needs an e-mail address")
        return value

    @field_validator("needs")
    @classmethod
    def _distinct(cls, value: list[Need]) -> list[Need]:
        return list(dict.fromkeys(value))

    @field_validator("cadal")
    @classmethod
    def _cadal_only_for_asylum(cls, value: CadalInput | None, info: ValidationInfo) -> CadalInput | None:
        situation = info.data.get("situation")
        if value is not None and situation is not None and situation is not Situation.asylum_reception:
            raise ValueError("only for an asylum seeker in a reception centre (situation asylum_reception)")
        return value


class MatchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Line = Field(min_length=1, max_length=200)
    date_of_birth: Day | None = None
    phone: str | None = Field(None, max_length=40, pattern=r"^\+?[0-9 ()./-]{6,40}$")
    email: EmailStr | None = Field(None, max_length=320)


class OverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    decision: Decision
    place_kind: PlaceKind | None = None
    reason: Text = Field(min_length=1, max_length=2000, description="why the staff member decides so")


class FollowUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: Text | None = Field(None, max_length=2000)
    next_follow_up_on: Day | None = Field(None, description="the next follow-up; empty when nothing more is planned")

    @field_validator("next_follow_up_on")
    @classmethod
    def _not_past(cls, value: date | None) -> date | None:
        if value is not None and value < date.today():
            raise ValueError("lies in the past")
        return value


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Line = Field(min_length=1, max_length=64)
    password: Line = Field(min_length=1, max_length=1000)


class FieldError(BaseModel):
    field: str = Field(description="the refused field, e.g. email or cadal.fedasil_designation_ref")
    reason: str
    type: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError]


class SessionOut(BaseModel):
    token: str
    token_type: str = "bearer"
    expires_in: int
    username: str
    roles: list[str]


class RuleOut(BaseModel):
    rule: str
    passed: bool
    inputs: dict
    explanation: str


class AssessmentOut(BaseModel):
    decision: str
    track: str
    place_kind: str | None
    needs_review: bool
    refer_to: str | None
    follow_up_on: date | None
    decided_at: datetime
    decided_by: str
    override_reason: str | None
    rules: list[RuleOut]


class RequestOut(BaseModel):
    request_ref: str
    person_ref: str
    received_at: datetime
    recorded_by: str
    channel: str
    caller: str
    situation: str
    urgency: str
    needs: list[str]
    decision: str
    track: str
    place_kind: str | None
    needs_review: bool
    refer_to: str | None
    follow_up_on: date | None
    decided_by: str
    decided_at: datetime
    override_reason: str | None
    rules: list[RuleOut]
    history: list[AssessmentOut] = Field(description="every decision on this request, oldest first")


class TimelineOut(BaseModel):
    event_type: str
    occurred_at: datetime
    details: dict


class FollowUpOut(BaseModel):
    request_ref: str
    done_at: datetime
    done_by: str
    note: str | None
    next_follow_up_on: date | None


# The purposes referrals and notify understand: any referral, a partner category, or a referral
# for that category only (services/referrals/domain.purpose_covers).
PARTNER_CATEGORIES = (
    "legal_aid", "psychosocial_support", "language_integration", "shelter", "detention_visits", "fgm_support",
    "youth_services", "housing_search", "health", "social_assistance", "family_reunification",
    "employment_training", "material_aid", "information_advocacy",
)
CONSENT_PURPOSES = ("referral", *PARTNER_CATEGORIES, *(f"referral:{c}" for c in PARTNER_CATEGORIES))
CONSENT_REF = r"^C-[0-9a-f]{12}$"
ERASURE_REF = r"^E-[0-9a-f]{12}$"


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partner_ref: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$",
                             description="the partner organisation's reference in referrals' directory")
    purpose: str = Field(description="`referral`, a partner category code, or `referral:<category>`")
    expires_on: date | None = Field(None, description="the consent lapses after this day")

    @field_validator("purpose")
    @classmethod
    def known_purpose(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in CONSENT_PURPOSES:
            raise ValueError("unknown purpose: use referral, a partner category, or referral:<category>")
        return value


class ConsentOut(BaseModel):
    consent_ref: str
    person_ref: str
    partner_ref: str
    purpose: str
    expires_on: date | None
    given_at: datetime
    given_by: str
    withdrawn_at: datetime | None
    withdrawn_by: str | None
    in_force: bool = Field(description="not withdrawn and not expired")


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=3, max_length=500, description="why the person's data is erased; stays in intake")

    @field_validator("reason")
    @classmethod
    def not_blank(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError("give the reason for the erasure")
        return value


class ErasureConfirmationOut(BaseModel):
    service: str
    records_erased: int
    confirmed_at: datetime


class ErasureOut(BaseModel):
    erasure_ref: str
    person_ref: str
    requested_at: datetime
    requested_by: str
    reason: str
    records_erased: int = Field(description="rows intake itself erased or reduced to a tombstone")
    confirmations: list[ErasureConfirmationOut]
    waiting_for: list[str] = Field(description="services that have not confirmed yet")
    complete: bool


class CaseFileOut(BaseModel):
    person_ref: str
    name: str
    date_of_birth: date | None
    stated_age: int | None
    age: int | None
    language: str
    phone: str | None
    email: str | None
    safe_to_leave_message: bool
    preferred_contact: str
    created_at: datetime
    where_now: str = Field(description="in_stay, stay_ending, waitlisted, referred, discharged, supported, declined or assessed")
    requests: list[RequestOut] = Field(description="newest first")
    follow_ups: list[FollowUpOut]
    timeline: list[TimelineOut]
    consents: list[ConsentOut] = Field(default_factory=list, description="newest first, withdrawn ones included")


class CaseFileSummary(BaseModel):
    person_ref: str
    name: str
    age: int | None
    last_request_ref: str | None
    last_received_at: datetime | None
    decision: str | None
    track: str | None


class MatchOut(BaseModel):
    person_ref: str
    name: str
    date_of_birth: date | None
    reasons: list[str]


class QueueItem(BaseModel):
    request_ref: str
    person_ref: str
    name: str
    received_at: datetime
    channel: str
    urgency: str
    decision: str
    track: str
    needs_review: bool
    follow_up_on: date | None
    follow_up_due: bool


class QueueOut(BaseModel):
    today: date
    new: list[QueueItem] = Field(description="received today and needing nothing more")
    pending: list[QueueItem] = Field(description="waiting for a staff decision or a follow-up due today or earlier")


class CounterOut(BaseModel):
    key: str
    shown: str = Field(description='"<5" for fewer than five, else a multiple of five followed by "+"')
    at_least: int


class CountersOut(BaseModel):
    counters: list[CounterOut]
    rule: str
