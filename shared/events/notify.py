"""Events notify publishes."""

from .envelope import Event, contract


@contract("notify")
class NotificationDelivered(Event):
    notification_ref: str
    cause_event_id: str
    channel: str
    recipient_kind: str
    attempts: int


@contract("notify")
class NotificationFailed(Event):
    notification_ref: str
    cause_event_id: str
    channel: str
    recipient_kind: str
    attempts: int
    reason_code: str
