"""Consumer groups over FastStream with the guarantees FastStream's defaults do not give.

* groups are created at id 0 before any subscriber starts, so nothing published earlier is missed;
* entries are read in batches and acknowledged only after the store committed their effects;
* the inbox makes a redelivered event a no-op;
* a second subscriber per stream takes over entries left pending (by a crash, or a failed
  handler) once they are idle, and dead-letters an entry after `max_deliveries`;
* malformed or unknown entries are dead-lettered at once, with the reason, and the stream moves on;
* a watchdog recreates groups and restarts subscribers that stopped (e.g. after a Redis restart).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.message import FAKE_CONSUMER, bDATA_KEY as DATA_KEY
from faststream.redis.message import RedisBatchStreamMessage as BatchMessage
from faststream.redis.parser.binary import BinaryMessageFormatV1
from pydantic import ValidationError
from redis.exceptions import ResponseError
from sqlalchemy import bindparam
from sqlmodel import col, select

from shared.observability import (
    DEAD_LETTERED,
    DUPLICATES,
    FAILED,
    HANDLER_SECONDS,
    PROCESSED,
    RECEIVED,
    REDELIVERED,
    span,
)
from shared.events import REGISTRY, Envelope, Event, UnknownEvent, dead_letter_stream, group_name, streams_read_by

from .faults import SPEC as FAULTS
from .faults import fault_point
from .tables import InboxEntry
from .uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger("consumer")

Handler = Callable[[UnitOfWork, Envelope, Any], Awaitable[None]]


@dataclass(frozen=True)
class Prepared:
    """A handler whose store reads for a run of events are made once, by `prepare(uow, [(envelope,
    event), ...])`, which leaves them in `uow.memo`; the handler defers its writes (`uow.defer`).
    `concerns(envelope, event)`, when given, says from memory whether the event needs the handler at
    all: one that does not is acknowledged without a unit of work."""

    handle: Handler
    prepare: Callable[[UnitOfWork, list[tuple[Envelope, Event]]], Awaitable[None]]
    concerns: Callable[[Envelope, Event], bool] | None = None

    async def __call__(self, uow: UnitOfWork, envelope: Envelope, event: Any) -> None:
        await self.handle(uow, envelope, event)


@dataclass
class Entry:
    stream: str
    entry_id: bytes
    raw: bytes | None  # the body as published; None: the entry holds no message
    envelope: Envelope | None = None
    event: Event | None = None


class EventConsumer:
    def __init__(
        self,
        broker: RedisBroker,
        *,
        service: str,
        namespace: str,
        consumer: str,
        handlers: dict[str, Handler],
        uow: UnitOfWorkFactory,
        batch_size: int = 500,
        poll_interval_ms: int = 2000,
        reclaim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
    ):
        self.broker = broker
        self.service = service
        self.group = group_name(service)
        self.consumer = consumer
        self.handlers = handlers
        self.uow = uow
        self.streams = streams_read_by(namespace, service)
        self.dead_letters = dead_letter_stream(namespace)
        self.max_deliveries = max_deliveries
        self.reclaim_idle_ms = reclaim_idle_ms
        self.subscribers = []
        self.stats = {"received": 0, "processed": 0, "duplicates": 0, "failed": 0, "dead_lettered": 0, "reclaimed": 0}
        for stream in self.streams:
            self._subscribe(stream, batch_size, poll_interval_ms)

    def _subscribe(self, stream: str, batch_size: int, poll_interval_ms: int) -> None:
        main = self.broker.subscriber(
            stream=StreamSub(
                stream, group=self.group, consumer=self.consumer, batch=True,
                max_records=batch_size, polling_interval=poll_interval_ms,
            ),
            ack_policy=AckPolicy.MANUAL,
            parser=raw_bodies, decoder=bodies_as_read,
        )
        reclaim = self.broker.subscriber(
            stream=StreamSub(
                stream, group=self.group, consumer=self.consumer, batch=True,
                min_idle_time=self.reclaim_idle_ms, polling_interval=max(poll_interval_ms, 500),
            ),
            ack_policy=AckPolicy.MANUAL,
            parser=raw_bodies, decoder=bodies_as_read,
        )

        # The entry ids come with the bodies (raw_bodies): asking FastStream for the message as well
        # made FastDepends resolve it on a worker thread, a thread hop for every batch.
        @main
        async def on_batch(entries: list[Any]) -> None:
            await self.consume(stream, entries, reclaimed=False)

        @reclaim
        async def on_reclaimed(entries: list[Any]) -> None:
            await self.consume(stream, entries, reclaimed=True)

        self.subscribers += [main, reclaim]

    async def ensure_groups(self) -> None:
        client = await self.broker.connect()
        for stream in self.streams:
            try:
                await client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def running(self) -> bool:
        return all(sub.running for sub in self.subscribers)

    async def watch(self, every: float = 2.0) -> None:
        """Bring stopped subscribers back, e.g. after Redis lost its groups in a restart."""
        while True:
            await asyncio.sleep(every)
            stopped = [sub for sub in self.subscribers if not sub.running]
            if not stopped:
                continue
            try:
                await self.ensure_groups()
                for sub in stopped:
                    await sub.stop()
                    await sub.start()
                log.warning("consumer.restarted_subscribers", count=len(stopped))
            except Exception as exc:
                log.warning("consumer.restart_failed", error=type(exc).__name__)

    # --- processing ---------------------------------------------------------------

    async def consume(self, stream: str, read: list[tuple[bytes, bytes | None]], *, reclaimed: bool) -> None:
        """`read`: (entry id, body as published, or None for an entry that holds no message)."""
        entries = [Entry(stream, entry_id, raw) for entry_id, raw in read]
        self.stats["received"] += len(entries)
        RECEIVED.labels(self.service, stream).inc(len(entries))
        if reclaimed:
            self.stats["reclaimed"] += len(entries)
            REDELIVERED.labels(self.service, stream).inc(len(entries))
            entries = await self._dead_letter_exhausted(entries)

        useful: list[Entry] = []
        ignored: list[Entry] = []
        for entry in entries:
            reason = self._parse(entry)
            if reason is not None:
                await self._dead_letter(entry, reason, deliveries=1)
            elif self._concerned(entry):
                useful.append(entry)
            else:
                ignored.append(entry)
        if ignored:
            await self._ack(stream, ignored)
        if not useful:
            return

        try:
            await self.apply(useful)
            await self._ack(stream, useful)
            return
        except Exception as exc:
            log.warning("consumer.batch_failed", stream=stream, size=len(useful), error=type(exc).__name__)

        # One bad event must not hold back the others: retry each on its own.
        for entry in useful:
            try:
                await self.apply([entry])
                await self._ack(stream, [entry])
            except Exception as exc:
                if await self._handled_elsewhere(entry):
                    # Another replica committed this event meanwhile (its inbox row won the race).
                    self.stats["duplicates"] += 1
                    DUPLICATES.labels(self.service).inc()
                    await self._ack(stream, [entry])
                    continue
                self.stats["failed"] += 1
                FAILED.labels(self.service, entry.envelope.type).inc()
                log.error(
                    "consumer.handler_failed", event_id=entry.envelope.event_id,
                    event_type=entry.envelope.type, error=type(exc).__name__,
                )

    def _concerned(self, entry: Entry) -> bool:
        handler = self.handlers.get(entry.envelope.type)
        if handler is None:
            return False
        concerns = getattr(handler, "concerns", None)
        return concerns is None or concerns(entry.envelope, entry.event)

    def _parse(self, entry: Entry) -> str | None:
        if entry.raw is None:
            return "unreadable entry: it holds no message"
        try:
            entry.envelope = Envelope.model_validate_json(entry.raw)
            if entry.envelope.type not in REGISTRY:
                raise UnknownEvent(f"no contract named {entry.envelope.type!r}")
            if entry.envelope.type in self.handlers:
                entry.event = entry.envelope.open()
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "json_invalid":
                return "unreadable entry: its body is not JSON"
            where = ".".join(str(p) for p in first["loc"]) or "body"
            reason = f"invalid {where}: {first['msg']}"
            env = entry.envelope
            known = REGISTRY.get(env.type) if env is not None else None
            if known is not None and env.schema_version != known.schema_version:
                reason = f"{env.type} v{env.schema_version} not readable by this v{known.schema_version} reader: {reason}"
            return reason
        except UnknownEvent as exc:
            return str(exc)
        except Exception as exc:
            return f"unreadable entry: {type(exc).__name__}"
        return None

    async def apply(self, entries: list[Entry]) -> None:
        """Handle parsed entries in one unit of work: inbox, handlers, commit (no acknowledgement)."""
        started = time.perf_counter()
        async with self.uow() as uow:
            ids = [e.envelope.event_id for e in entries]
            seen = set((await uow.session.exec(ALREADY_HANDLED, params={"ids": ids})).all())
            fresh = []
            for entry in entries:
                if entry.envelope.event_id in seen:
                    self.stats["duplicates"] += 1
                    DUPLICATES.labels(self.service).inc()
                    continue
                seen.add(entry.envelope.event_id)
                fresh.append(entry)
            for run in _runs(fresh, self.handlers):
                await self._prepare(uow, run)
                for entry in run:
                    env = entry.envelope
                    if FAULTS:
                        await fault_point("handler", env.model_dump_json())
                    with span(f"handle {env.type}", env.traceparent, event_id=env.event_id, service=self.service):
                        await self.handlers[env.type](uow, env, entry.event)
                    uow.handled(env, entry.stream)
                # What the run deferred is in the store before the next run's handlers read it.
                await uow.write_deferred()
            done = len(fresh)
            await uow.commit()
        if FAULTS:
            await fault_point("after_commit")
        HANDLER_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        self.stats["processed"] += done
        for entry in entries:
            PROCESSED.labels(self.service, entry.envelope.type).inc()
            log.debug("consumer.handled", event_id=entry.envelope.event_id, event_type=entry.envelope.type,
                      correlation_id=entry.envelope.correlation_id)

    async def _prepare(self, uow: UnitOfWork, run: list[Entry]) -> None:
        by_handler: dict[Any, list[tuple[Envelope, Event]]] = {}
        for entry in run:
            prepare = getattr(self.handlers[entry.envelope.type], "prepare", None)
            if prepare is not None:
                by_handler.setdefault(prepare, []).append((entry.envelope, entry.event))
        for prepare, events in by_handler.items():
            await prepare(uow, events)

    async def _handled_elsewhere(self, entry: Entry) -> bool:
        try:
            async with self.uow() as uow:
                found = (await uow.session.exec(
                    select(InboxEntry.event_id).where(InboxEntry.event_id == entry.envelope.event_id))).first()
            return found is not None
        except Exception:
            return False

    async def _ack(self, stream: str, entries: list[Entry]) -> None:
        client = await self.broker.connect()
        await client.xack(stream, self.group, *[e.entry_id for e in entries])

    async def _dead_letter_exhausted(self, entries: list[Entry]) -> list[Entry]:
        client = await self.broker.connect()
        keep = []
        for entry in entries:
            pending = await client.xpending_range(
                entry.stream, self.group, min=entry.entry_id, max=entry.entry_id, count=1
            )
            deliveries = int(pending[0]["times_delivered"]) if pending else 1
            if deliveries > self.max_deliveries:
                self._parse(entry)
                await self._dead_letter(entry, f"handler failed {deliveries - 1} times", deliveries=deliveries)
            else:
                keep.append(entry)
        return keep

    async def _dead_letter(self, entry: Entry, reason: str, *, deliveries: int) -> None:
        client = await self.broker.connect()
        env = entry.envelope
        fields = {
            "origin_stream": entry.stream,
            "origin_id": entry.entry_id,
            "group": self.group,
            "reason": reason,
            "deliveries": deliveries,
            "event_id": env.event_id if env else "",
            "event_type": env.type if env else "",
        }
        if entry.raw is None:
            original = await client.xrange(entry.stream, entry.entry_id, entry.entry_id)
            fields["body"] = b"".join(v for _id, raw in original for v in raw.values())
        else:
            fields["body"] = entry.raw
        async with client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letters, fields)
            pipe.xack(entry.stream, self.group, entry.entry_id)
            await pipe.execute()
        self.stats["dead_lettered"] += 1
        DEAD_LETTERED.labels(self.service, entry.stream).inc()
        log.error("consumer.dead_lettered", stream=entry.stream, entry_id=entry.entry_id.decode(),
                  event_id=fields["event_id"], event_type=fields["event_type"], reason=reason)


# Built once: building an IN clause for each batch cost more than running it.
ALREADY_HANDLED = select(InboxEntry.event_id).where(col(InboxEntry.event_id).in_(bindparam("ids", expanding=True)))


def _runs(entries: list[Entry], handlers: dict[str, Handler]) -> list[list[Entry]]:
    """Consecutive events whose handlers read the store through a `prepare` go together (one
    prepare, their writes deferred to the end of the run); any other event is a run of its own."""
    runs: list[list[Entry]] = []
    for entry in entries:
        batched = hasattr(handlers[entry.envelope.type], "prepare")
        if batched and runs and hasattr(handlers[runs[-1][-1].envelope.type], "prepare"):
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


async def raw_bodies(raw: dict, _faststream_parser) -> BatchMessage:
    """Each entry's id and its body as the bytes it was published with (None when the entry holds no
    FastStream message), for the consumer to validate straight from JSON. FastStream's own batch
    parser decodes every body, encodes the whole batch as one JSON document and decodes that
    again; and it fails the whole batch when one body is not JSON."""
    entries = [(entry_id, _body(fields)) for entry_id, fields in zip(raw["message_ids"], raw["data"], strict=True)]
    return BatchMessage(raw_message=raw, body=entries, consumer=FAKE_CONSUMER, group=None)


async def bodies_as_read(message: BatchMessage, _faststream_decoder) -> list[tuple[bytes, bytes | None]]:
    return message.body


def _body(fields: dict) -> bytes | None:
    data = fields.get(DATA_KEY)
    if data is None:
        return None
    body, _headers = BinaryMessageFormatV1.parse(data)
    return body
