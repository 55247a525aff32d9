"""Events referrals publishes."""

from .envelope import Event, contract


@contract("referrals")
class ReferralMade(Event):
    referral_ref: str
    person_ref: str
    partner_ref: str
    service_category: str
    shares_personal_data: bool = False


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
