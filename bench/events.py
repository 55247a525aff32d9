"""Backlogs of real events, published the way the services publish them, and the progress of a
consumer group through them, read from Redis alone (so it is seen even before a service answers HTTP)."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as aioredis
from faststream.redis import RedisBroker

from shared.events import Envelope, new_ref
from shared.events.codes import Decision, Need, PlaceKind, Track, Urgency
from shared.events.housing import PersonAdmitted
from shared.events.intake import RequestAssessed


def request_assessed() -> Envelope:
    """A youth request intake decided to accommodate in an emergency place."""
    return Envelope.wrap(RequestAssessed(
        request_ref=new_ref("R"), person_ref=new_ref("P"), decision=Decision.accommodate, track=Track.youth,
        place_kind=PlaceKind.emergency, urgency=Urgency.immediate, needs=(Need.accommodation, Need.legal),
    ))


def person_admitted() -> Envelope:
    today = datetime.now(UTC).date()
    return Envelope.wrap(PersonAdmitted(
        stay_ref=new_ref("S"), person_ref=new_ref("P"), request_ref=new_ref("R"), place_ref="PL-001",
        place_kind=PlaceKind.emergency, starts_on=today, planned_end=today + timedelta(days=90),
    ))


# consuming service -> (producer whose stream carries the backlog, the event it reacts to)
HANDLER_LOADS: dict[str, tuple[str, Callable[[], Envelope]]] = {
    "housing": ("intake", request_assessed),
    "referrals": ("intake", request_assessed),
    "notify": ("housing", person_admitted),
    "intake": ("housing", person_admitted),
}


async def preload(redis_url: str, stream: str, envelopes: list[Envelope], batch: int = 1000) -> list[str]:
    """Publish through a FastStream broker in pipelined batches, as the outbox relay does
    (FastStream writes its own format into the entry). Returns the entry ids in order."""
    broker = RedisBroker(redis_url)
    client = await broker.connect()
    ids: list[str] = []
    try:
        for start in range(0, len(envelopes), batch):
            async with client.pipeline(transaction=False) as pipe:
                for envelope in envelopes[start:start + batch]:
                    await broker.publish(
                        envelope.model_dump(mode="json"), stream=stream, correlation_id=envelope.correlation_id,
                        headers={"event_id": envelope.event_id, "event_type": envelope.type}, pipeline=pipe,
                    )
                ids += [i.decode() if isinstance(i, bytes) else i for i in await pipe.execute()]
    finally:
        await broker.stop()
    return ids


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass
class Progress:
    """A consumer group working through a known list of entries."""

    total: int
    started: float  # when the service process was spawned (time.monotonic())
    first_delivery: float | None = None  # first sample that saw entries handed to the consumer
    done: float | None = None  # every entry acknowledged, i.e. its effects committed
    acknowledged: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, acknowledged)

    @property
    def per_second(self) -> float | None:
        """Events per second from the first delivery to the last acknowledgement (or, when the
        time ran out first, to the last sample)."""
        if self.first_delivery is None or not self.samples:
            return None
        if self.done is not None:
            return self.total / max(self.done - self.first_delivery, 1e-6)
        last_time, acknowledged = self.samples[-1]
        return acknowledged / max(last_time - self.first_delivery, 1e-6)


async def follow_group(redis_url: str, stream: str, group: str, entry_ids: list[str], *, started: float,
                       timeout: float, is_alive: Callable[[], bool], every: float = 0.02) -> Progress:
    """Sample XINFO GROUPS until every entry in `entry_ids` is acknowledged by `group`.

    Acknowledged = delivered (entries up to the group's last-delivered-id) minus pending; the
    services acknowledge only after their store committed, so this counts committed effects."""
    keys = [_entry_key(i) for i in entry_ids]
    progress = Progress(total=len(entry_ids), started=started)
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        while True:
            now = time.monotonic()
            groups = {g["name"]: g for g in await client.xinfo_groups(stream)} if await client.exists(stream) else {}
            if group in groups:
                delivered = bisect.bisect_right(keys, _entry_key(groups[group]["last-delivered-id"]))
                acknowledged = delivered - int(groups[group]["pending"])
                if delivered and progress.first_delivery is None:
                    progress.first_delivery = now - every / 2
                progress.acknowledged = acknowledged
                progress.samples.append((now, acknowledged))
                if acknowledged >= progress.total:
                    progress.done = now
                    return progress
            if now - started > timeout:
                return progress
            if not is_alive():
                raise RuntimeError(f"the {group} process exited while draining")
            await asyncio.sleep(every)
    finally:
        await client.aclose()
