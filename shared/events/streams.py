"""Stream names and consumer groups, declared once.

Each service publishes to its own stream; each consuming service reads through one consumer
group named after itself, so replicas of a service share the work.
"""

PRODUCERS = ("intake", "housing", "referrals", "notify")

# consuming service -> producers whose streams it reads
SUBSCRIPTIONS: dict[str, tuple[str, ...]] = {
    "intake": ("housing", "referrals", "notify"),
    "housing": ("intake",),
    "referrals": ("intake", "housing"),
    "notify": ("intake", "housing", "referrals"),
}


def stream_name(namespace: str, producer: str) -> str:
    if producer not in PRODUCERS:
        raise ValueError(f"unknown producer {producer!r}")
    return f"{namespace}.{producer}.events"


def dead_letter_stream(namespace: str) -> str:
    return f"{namespace}.dead-letters"


def group_name(consumer_service: str) -> str:
    return consumer_service


def streams_read_by(namespace: str, consumer_service: str) -> list[str]:
    return [stream_name(namespace, p) for p in SUBSCRIPTIONS[consumer_service]]
