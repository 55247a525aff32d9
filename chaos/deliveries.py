"""Entries the suite writes on the services' streams itself: copies of real events (duplicates, out of
order, stale), malformed and unknown entries, and poison events that make every handler fail.

Everything is written straight to Redis (not through the proxy) in FastStream's own binary format,
so the services read it exactly as they read their peers' events. Each bad entry is remembered
with its stream and entry id, so the checker can tell which group had to dead-letter it.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from faststream.redis.parser.binary import BinaryMessageFormatV1

from shared.events import PRODUCERS, SUBSCRIPTIONS, stream_name

POISON_MARKER = "chaos-poison"

# Bad entries, and which groups reading the stream must dead-letter them:
# "all" every group reading the stream, "handlers" at least one group whose service handles the type.
BAD_KINDS = {
    "garbage": "all",  # fields of someone else's format, no FastStream body at all
    "not_json": "all",  # a FastStream body that is not JSON
    "not_an_envelope": "all",  # JSON, but no envelope
    "invalid_payload": "handlers",  # an envelope of a known type whose payload breaks the contract
    "unknown_type": "all",  # an envelope of a type no contract declares (README: dead-lettered at once)
}

# A contract each stream carries, with a payload that breaks it; and who handles it today.
INVALID_PAYLOADS = {
    "intake": ("RequestAssessed", {"request_ref": "R-chaos", "person_ref": "P-chaos", "decision": "teleport",
                                   "track": "youth"}),
    "housing": ("PersonAdmitted", {"stay_ref": "S-chaos", "person_ref": "P-chaos", "place_ref": "PL-chaos",
                                   "place_kind": "castle", "starts_on": "2026-01-01", "planned_end": "2026-04-01"}),
    "referrals": ("ReferralMade", {"referral_ref": "RF-chaos", "person_ref": "P-chaos"}),
    "notify": ("NotificationDelivered", {"notification_ref": "N-chaos", "attempts": "many"}),
}
HANDLED_BY = {"RequestAssessed": {"housing", "referrals"}, "PersonAdmitted": {"intake", "referrals", "notify"},
              "ReferralMade": {"intake"}, "NotificationDelivered": set()}


def direct_client(redis_url: str) -> aioredis.Redis:
    """A client of the suite's own; after a Redis restart its first command on a stale connection is retried."""
    return aioredis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=1,
                             retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
                             retry_on_error=[RedisConnectionError])


def readers(producer: str) -> set[str]:
    return {group for group, producers in SUBSCRIPTIONS.items() if producer in producers}


@dataclass
class InjectedEntry:
    kind: str  # one of BAD_KINDS or "poison"
    producer: str
    stream: str
    entry_id: str
    event_id: str = ""
    event_type: str = ""
    must_dead_letter: set[str] = field(default_factory=set)  # groups that must
    any_of: set[str] = field(default_factory=set)  # at least one of these groups must


@dataclass
class InjectionLog:
    duplicates: int = 0  # copies published
    reordered: int = 0  # copies published newest first or long after
    bad: list[InjectedEntry] = field(default_factory=list)
    copied_event_ids: set[str] = field(default_factory=set)

    def counts(self) -> dict[str, int]:
        per_kind: dict[str, int] = {}
        for entry in self.bad:
            per_kind[entry.kind] = per_kind.get(entry.kind, 0) + 1
        return {"duplicate_copies": self.duplicates, "reordered_copies": self.reordered, **per_kind}


def envelope(event_type: str, producer: str, payload: dict) -> dict:
    event_id = str(uuid.uuid4())
    return {"event_id": event_id, "type": event_type, "schema_version": 1, "occurred_at": datetime.now(UTC).isoformat(),
            "correlation_id": event_id, "causation_id": None, "producer": producer, "payload": payload}


class EventInjector:
    def __init__(self, redis_url: str, namespace: str, rng: random.Random, *, max_deliveries: int,
                 bad_kinds: tuple[str, ...] = tuple(BAD_KINDS)):
        self.bad_kinds = bad_kinds
        self.client = direct_client(redis_url)
        self.namespace = namespace
        self.rng = rng
        self.max_deliveries = max_deliveries
        self.log = InjectionLog()
        self._injected_ids: set[bytes] = set()
        self._poisoned = 0

    async def close(self) -> None:
        await self.client.aclose()

    def stream(self, producer: str) -> str:
        return stream_name(self.namespace, producer)

    async def _xadd_body(self, producer: str, body: bytes | dict, headers: dict | None = None) -> str:
        data = await BinaryMessageFormatV1.encode(message=body, reply_to=None, headers=headers or {},
                                                  correlation_id=str(uuid.uuid4()))
        entry_id = await self.client.xadd(self.stream(producer), {"__data__": data})
        self._injected_ids.add(entry_id)
        return entry_id.decode()

    # --- copies of real events -------------------------------------------------------

    async def _real_entries(self, producer: str, *, newest: bool, count: int) -> list[tuple[bytes, dict]]:
        stream = self.stream(producer)
        rows = await (self.client.xrevrange(stream, count=count * 3) if newest else self.client.xrange(stream, count=count * 3))
        real = []
        for entry_id, fields in rows:
            if entry_id in self._injected_ids or b"__data__" not in fields or POISON_MARKER.encode() in fields[b"__data__"]:
                continue
            try:
                body, _headers = BinaryMessageFormatV1.parse(fields[b"__data__"])
                event = orjson.loads(body)
                if "event_id" not in event:
                    continue
            except Exception:
                continue
            self.log.copied_event_ids.add(event["event_id"])
            real.append((entry_id, fields))
        return real[:count]

    async def duplicate_burst(self) -> int:
        """Re-publish a few recent real entries of one stream, each one to three more times, shuffled."""
        producer = self.rng.choice(PRODUCERS)
        entries = await self._real_entries(producer, newest=True, count=self.rng.randint(5, 20))
        copies = [fields for _id, fields in entries for _ in range(self.rng.randint(1, 3))]
        self.rng.shuffle(copies)
        for fields in copies:
            self._injected_ids.add(await self.client.xadd(self.stream(producer), fields))
        self.log.duplicates += len(copies)
        return len(copies)

    async def reorder_burst(self) -> int:
        """Re-publish real entries newest first, and some of the oldest long after the fact."""
        published = 0
        for producer in PRODUCERS:
            recent = await self._real_entries(producer, newest=True, count=self.rng.randint(3, 10))
            old = await self._real_entries(producer, newest=False, count=self.rng.randint(1, 5))
            for _id, fields in [*recent, *old]:  # xrevrange: newest first already
                self._injected_ids.add(await self.client.xadd(self.stream(producer), fields))
                published += 1
        self.log.reordered += published
        return published

    # --- bad entries -----------------------------------------------------------------

    async def bad_round(self) -> int:
        """One entry of every bad kind on every stream."""
        made = 0
        for producer in PRODUCERS:
            group_set = readers(producer)
            for kind, rule in BAD_KINDS.items():
                if kind not in self.bad_kinds:
                    continue
                event_id, event_type = "", ""
                if kind == "garbage":
                    entry_id = await self.client.xadd(self.stream(producer), {"garbage": f"chaos {self.rng.random()}"})
                    self._injected_ids.add(entry_id)
                    entry_id = entry_id.decode()
                elif kind == "not_json":
                    entry_id = await self._xadd_body(producer, b"\x00\xffnot json at all {")
                elif kind == "not_an_envelope":
                    entry_id = await self._xadd_body(producer, {"hello": "chaos", "n": self.rng.randint(0, 9)})
                elif kind == "invalid_payload":
                    event_type, payload = INVALID_PAYLOADS[producer]
                    env = envelope(event_type, producer, payload)
                    event_id = env["event_id"]
                    entry_id = await self._xadd_body(producer, env)
                else:
                    event_type = "ChaosUnknownEvent"
                    env = envelope(event_type, producer, {"person_ref": "P-chaos-unknown"})
                    event_id = env["event_id"]
                    entry_id = await self._xadd_body(producer, env)
                entry = InjectedEntry(kind, producer, self.stream(producer), entry_id, event_id, event_type)
                if rule == "all":
                    entry.must_dead_letter = set(group_set)
                else:
                    entry.any_of = HANDLED_BY.get(event_type, set()) & group_set
                self.log.bad.append(entry)
                made += 1
        return made

    async def poison(self) -> InjectedEntry:
        """A well-formed event whose every handler fails (the services run with poison=chaos-poison)."""
        n = self._poisoned
        self._poisoned += 1
        person = f"P-{POISON_MARKER}-{n}"
        if n % 2 == 0:
            producer, event_type = "intake", "RequestAssessed"
            payload = {"request_ref": f"R-{POISON_MARKER}-{n}", "person_ref": person, "decision": "accommodate",
                       "track": "youth", "place_kind": "emergency"}
        else:
            producer, event_type = "housing", "PersonAdmitted"
            payload = {"stay_ref": f"S-{POISON_MARKER}-{n}", "person_ref": person, "place_ref": "PL-chaos",
                       "place_kind": "emergency", "starts_on": "2026-01-01", "planned_end": "2026-04-01"}
        env = envelope(event_type, producer, payload)
        entry_id = await self._xadd_body(producer, env)
        entry = InjectedEntry("poison", producer, self.stream(producer), entry_id, env["event_id"], event_type,
                              any_of=HANDLED_BY[event_type] & readers(producer))
        self.log.bad.append(entry)
        return entry
