"""Events notify publishes."""

from .envelope import Event, contract


@contract("notify")
class NotificationDelivered(Event):
    notification_ref: str
    cause_event_id: str
    channel: str
    recipient_kind: str
    attempts: int
    # added later (readers ignore what they do not know): what caused it, and about whom, by reference
    cause_event_type: str | None = None
    partner_ref: str | None = None
    person_ref: str | None = None


@contract("notify")
class NotificationFailed(Event):
    notification_ref: str
    cause_event_id: str
    channel: str
    recipient_kind: str
    attempts: int
    reason_code: str
    cause_event_type: str | None = None
    partner_ref: str | None = None
    person_ref: str | None = None
