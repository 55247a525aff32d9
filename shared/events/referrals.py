"""Events referrals publishes."""

from datetime import datetime

from .envelope import Event, contract


@contract("referrals")
class ReferralMade(Event):
    """A referral to a partner. The partner's address and the signed link for its notice are
    not on the broker: notify asks referrals for them (GET /api/referrals/{ref}/partner-notice)."""

    referral_ref: str
    person_ref: str
    partner_ref: str
    service_category: str
    shares_personal_data: bool = False
    service_ref: str | None = None  # the HSDS service id in the directory, when known
    origin: str = "staff"  # staff | minor_request | stay_ending
    respond_by: datetime | None = None  # unanswered by then, the referral expires


@contract("referrals")
class PersonFollowed(Event):
    person_ref: str
    reason: str


@contract("referrals")
class ReferralStatusChanged(Event):
    """pending -> accepted | declined -> completed | revoked | expired; reason and outcome are codes."""

    referral_ref: str
    person_ref: str
    partner_ref: str
    status: str
    previous_status: str
    reason_code: str | None = None
    outcome: str | None = None  # for completed: got_help | not_successful
    actor_kind: str | None = None  # partner | staff | system
