"""Event envelope and contracts, grouped by the service that publishes them."""

from . import erasure, housing, intake, notify, referrals  # noqa: F401  (registers every contract)
from .envelope import REGISTRY, Envelope, Event, UnknownEvent, contract, new_ref
from .streams import PRODUCERS, SUBSCRIPTIONS, dead_letter_stream, group_name, stream_name, streams_read_by

__all__ = [
    "PRODUCERS",
    "REGISTRY",
    "SUBSCRIPTIONS",
    "Envelope",
    "Event",
    "UnknownEvent",
    "contract",
    "dead_letter_stream",
    "group_name",
    "new_ref",
    "stream_name",
    "streams_read_by",
]
