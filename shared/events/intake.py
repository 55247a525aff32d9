"""Events intake publishes. References and codes only: no personal data (rule 7)."""

from datetime import date, datetime

from pydantic import Field, field_validator

from .codes import HEALTH_NEEDS, Channel, Decision, Need, PlaceKind, Track, Urgency
from .envelope import Event, contract


@contract("intake")
class RequestReceived(Event):
    request_ref: str
    person_ref: str
    channel: Channel
    received_at: datetime


@contract("intake")
class RequestAssessed(Event):
    request_ref: str
    person_ref: str
    decision: Decision
    track: Track
    place_kind: PlaceKind | None = None
    urgency: Urgency = Urgency.days
    needs: tuple[Need, ...] = ()
    overridden: bool = False
    # Added for minors and other referrals: where to refer (a code such as "youth_services" or
    # "partner") and when intake follows up. Both optional, so older readers are unaffected.
    refer_to: str | None = Field(None, pattern=r"^[a-z_]{1,40}$")
    follow_up_on: date | None = None

    @field_validator("needs")
    @classmethod
    def _no_health_needs(cls, needs: tuple[Need, ...]) -> tuple[Need, ...]:
        # Health is special-category data (rule 7): it never leaves intake, on writing or on reading
        # an event an older intake published with it.
        return tuple(n for n in needs if n not in HEALTH_NEEDS)


@contract("intake")
class ConsentGiven(Event):
    """The person agreed that `partner_ref` may receive their data for `purpose`, until `expires_on`."""

    consent_ref: str
    person_ref: str
    partner_ref: str
    purpose: str
    expires_on: date | None = None


@contract("intake")
class ConsentWithdrawn(Event):
    consent_ref: str
    person_ref: str
    partner_ref: str
    purpose: str


@contract("intake")
class ErasureRequested(Event):
    erasure_ref: str
    person_ref: str
