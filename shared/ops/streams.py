"""Consumer-group lag and pending entries for every stream of a namespace."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from shared.events.streams import PRODUCERS, SUBSCRIPTIONS, dead_letter_stream, group_name, stream_name

from .common import redis_call, redis_client, text

_RANGE_CHUNK = 1000


@dataclass
class ConsumerReport:
    name: str
    pending: int
    idle_ms: int


@dataclass
class GroupReport:
    name: str
    expected: bool  # declared in SUBSCRIPTIONS
    exists: bool
    last_delivered_id: str | None = None
    entries_read: int | None = None  # Redis 7 only
    lag: int | None = None
    lag_source: str | None = None  # "redis" (XINFO GROUPS) or "computed" (XRANGE after last-delivered-id)
    pending: int = 0
    oldest_pending_id: str | None = None
    oldest_pending_idle_ms: int | None = None
    consumers: list[ConsumerReport] = field(default_factory=list)


@dataclass
class StreamReport:
    stream: str
    producer: str
    exists: bool
    length: int
    groups: list[GroupReport]


@dataclass
class StreamsReport:
    namespace: str
    redis_version: str
    streams: list[StreamReport]
    dead_letter_stream: str
    dead_letters: int

    def as_dict(self) -> dict:
        return asdict(self)


async def streams_report(url: str, namespace: str, timeout: float = 5.0) -> StreamsReport:
    client = redis_client(url, timeout)
    try:
        async def call(awaitable):
            return await redis_call(awaitable, url, timeout)

        info = await call(client.info("server"))
        streams = []
        for producer in PRODUCERS:
            stream = stream_name(namespace, producer)
            expected = sorted(group_name(c) for c, producers in SUBSCRIPTIONS.items() if producer in producers)
            streams.append(await _stream_report(client, call, stream, producer, expected))
        dead_letters = dead_letter_stream(namespace)
        return StreamsReport(
            namespace=namespace,
            redis_version=str(info.get("redis_version", "?")),
            streams=streams,
            dead_letter_stream=dead_letters,
            dead_letters=int(await call(client.xlen(dead_letters))),
        )
    finally:
        await client.aclose()


async def _stream_report(client: aioredis.Redis, call, stream: str, producer: str, expected: list[str]) -> StreamReport:
    if not await call(client.exists(stream)):
        groups = [GroupReport(name=g, expected=True, exists=False) for g in expected]
        return StreamReport(stream=stream, producer=producer, exists=False, length=0, groups=groups)

    length = int(await call(client.xlen(stream)))
    found: dict[str, GroupReport] = {}
    for raw in await call(client.xinfo_groups(stream)):
        name = text(raw["name"])
        group = GroupReport(
            name=name, expected=name in expected, exists=True,
            last_delivered_id=text(raw["last-delivered-id"]),
            entries_read=raw.get("entries-read"),
            pending=int(raw["pending"]),
        )
        if raw.get("lag") is not None:
            group.lag, group.lag_source = int(raw["lag"]), "redis"
        else:
            # Redis 6.2 has no lag; Redis 7 answers nil after deletions in the range. Count what follows.
            group.lag, group.lag_source = await _entries_after(client, call, stream, group.last_delivered_id), "computed"
        if group.pending:
            oldest = await call(client.xpending_range(stream, name, min="-", max="+", count=1))
            if oldest:
                group.oldest_pending_id = text(oldest[0]["message_id"])
                group.oldest_pending_idle_ms = int(oldest[0]["time_since_delivered"])
        try:
            consumers = await call(client.xinfo_consumers(stream, name))
        except ResponseError:
            consumers = []
        group.consumers = [
            ConsumerReport(name=text(c["name"]), pending=int(c["pending"]), idle_ms=int(c["idle"])) for c in consumers
        ]
        found[name] = group
    for name in expected:
        found.setdefault(name, GroupReport(name=name, expected=True, exists=False))
    return StreamReport(stream=stream, producer=producer, exists=True, length=length,
                        groups=[found[name] for name in sorted(found)])


async def _entries_after(client: aioredis.Redis, call, stream: str, last_id: str) -> int:
    count = 0
    start = f"({last_id}"
    while True:
        chunk = await call(client.xrange(stream, min=start, max="+", count=_RANGE_CHUNK))
        count += len(chunk)
        if len(chunk) < _RANGE_CHUNK:
            return count
        start = f"({text(chunk[-1][0])}"
