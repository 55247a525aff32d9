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
