"""Events intake publishes. References and codes only: no personal data (rule 7)."""

from datetime import datetime

from .codes import Channel, Decision, Need, PlaceKind, Track, Urgency
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
