"""Outbox relay: publishes committed events promptly after commit, and again after any outage."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import UTC, datetime

import orjson
import structlog
from faststream.redis import RedisBroker
from faststream.redis.message import bDATA_KEY as DATA_KEY
from faststream.redis.parser.binary import BinaryMessageFormatV1
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.observability import PUBLISHED
from shared.store import READ_ONLY

from .faults import SPEC as FAULTS
from .faults import fault_point
from .tables import OutboxEntry

log = structlog.get_logger("outbox")

MEMORY_LIMIT = 10_000  # committed rows kept for publishing from memory
# Rows published from memory are marked in the outbox together, at most this long after: one
# write transaction for many publishes. A crash before the mark republishes them; inboxes drop
# the copies.
MARK_DELAY_SECONDS = 0.2


class OutboxRelay:
    def __init__(
        self,
        service: str,
        broker: RedisBroker,
        sessions: async_sessionmaker[AsyncSession],
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        publish_timeout: float = 5.0,
        lock_rows: bool = False,
    ):
        self.service = service
        self.broker = broker
        self.sessions = sessions
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        # SQLite runs one replica and must not hold its write lock while Redis is slow.
        self.lock_rows = lock_rows
        self._wake = asyncio.Event()
        # Rows this process just committed, published from here without reading them back, in commit
        # order, once the outbox holds nothing older ("behind": at start and after a failure, until
        # a scan of the outbox comes back short). A row lost from here is still in the outbox.
        self._committed: deque[tuple] = deque()
        self._behind = True
        self._unmarked: list[str] = []  # event ids published from memory, not yet marked in the outbox
        self._unmarked_since = 0.0
        self.last_error: str | None = None
        self.published_total = 0

    def wake(self) -> None:
        self._wake.set()

    def committed(self, rows: list[dict]) -> None:
        """The outbox rows a unit of work just committed."""
        self._committed.extend((None, row["stream"], row["body"], row["event_id"]) for row in rows)
        if len(self._committed) > MEMORY_LIMIT:  # Redis has been away a while: the outbox has them all
            self._committed.clear()
            self._behind = True
        self._wake.set()

    async def run(self) -> None:
        backoff = self.poll_seconds
        try:
            while True:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self._next_wait(backoff))
                except TimeoutError:
                    pass
                self._wake.clear()
                try:
                    await self._publish_round()
                    self.last_error = None
                    backoff = self.poll_seconds
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis or the store is away: keep the rows, try again later.
                    self.last_error = type(exc).__name__
                    log.warning("outbox.publish_failed", error=type(exc).__name__)
                    backoff = min(backoff * 2, 10.0)
        finally:
            if self._unmarked:  # stopping: spare the next start republishing them
                try:
                    await asyncio.wait_for(self.mark_published(), timeout=self.publish_timeout)
                except Exception:
                    pass

    async def _publish_round(self) -> None:
        while await self.publish_pending() == self.batch_size:
            pass
        if self._unmarked and (len(self._unmarked) >= self.batch_size
                               or time.monotonic() - self._unmarked_since >= MARK_DELAY_SECONDS):
            await self.mark_published()

    def _next_wait(self, backoff: float) -> float:
        if not self._unmarked:
            return backoff
        return max(0.0, min(backoff, MARK_DELAY_SECONDS - (time.monotonic() - self._unmarked_since)))

    async def publish_pending(self) -> int:
        if self._committed and not self._behind:
            return await self._publish_committed()
        if self._unmarked:
            await self.mark_published()  # a scan must not find them unpublished
        try:
            published = await self._scan()
        except BaseException:
            self._behind = True
            raise
        if published < self.batch_size:
            self._behind = False
        return published

    async def _scan(self) -> int:
        if self.lock_rows:
            return await self._publish_locked()
        async with self.sessions() as session:
            await session.connection(execution_options=READ_ONLY)
            pending = await self._unpublished(session)
            await session.rollback()
        if not pending:
            return 0
        await self._publish(pending)
        async with self.sessions() as session:
            await self._mark_published(session, pending)
            await session.commit()
        return self._count(pending)

    async def _publish_locked(self) -> int:
        """PostgreSQL: rows stay locked from read to mark, so replicas' relays never publish the same row."""
        async with self.sessions() as session:
            pending = await self._unpublished(session, lock=True)
            if not pending:
                await session.rollback()
                return 0
            await self._publish(pending)
            await self._mark_published(session, pending)
            await session.commit()
        return self._count(pending)

    async def _publish_committed(self) -> int:
        pending = [self._committed.popleft() for _ in range(min(len(self._committed), self.batch_size))]
        try:
            await self._publish(pending)
        except BaseException:
            self._committed.extendleft(reversed(pending))
            self._behind = True  # the next scans of the outbox publish them, and what came after, in order
            raise
        if not self._unmarked:
            self._unmarked_since = time.monotonic()
        self._unmarked.extend(row[3] for row in pending)
        return self._count(pending)

    async def mark_published(self) -> None:
        """Marks in the outbox the rows published from memory since the last mark."""
        marking = list(self._unmarked)
        async with self.sessions() as session:
            for start in range(0, len(marking), self.batch_size):
                await session.exec(update(OutboxEntry)
                                   .where(col(OutboxEntry.event_id).in_(marking[start:start + self.batch_size]))
                                   .values(published_at=datetime.now(UTC)))
            await session.commit()
        del self._unmarked[:len(marking)]

    async def _unpublished(self, session: AsyncSession, lock: bool = False) -> list[tuple]:
        query = (
            select(OutboxEntry.id, OutboxEntry.stream, OutboxEntry.body, OutboxEntry.event_id)
            .where(col(OutboxEntry.published_at).is_(None))
            .order_by(col(OutboxEntry.id))
            .limit(self.batch_size)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        return [tuple(row) for row in (await session.exec(query)).all()]

    async def _publish(self, pending: list[tuple]) -> None:
        client = await self.broker.connect()
        async with client.pipeline(transaction=False) as pipe:
            for _, stream, body, event_id in pending:
                envelope = orjson.loads(body)
                # FastStream's own wire format around the stored JSON, as broker.publish would write
                # it, without turning the body into a dict and back for every event.
                entry = await BinaryMessageFormatV1.encode(
                    message=body.encode() if isinstance(body, str) else body, reply_to=None,
                    correlation_id=envelope["correlation_id"],
                    headers={"content-type": "application/json", "event_id": event_id, "event_type": envelope["type"]})
                pipe.xadd(stream, {DATA_KEY: entry})
            await asyncio.wait_for(pipe.execute(), timeout=self.publish_timeout)
        # A crash from here until the mark commits republishes these rows; inboxes drop the copies.
        if FAULTS:
            await fault_point("after_publish")

    async def _mark_published(self, session: AsyncSession, pending: list[tuple]) -> None:
        await session.exec(
            update(OutboxEntry)
            .where(col(OutboxEntry.id).in_([row_id for row_id, *_ in pending]))
            .values(published_at=datetime.now(UTC))
        )

    def _count(self, pending: list[tuple]) -> int:
        if self._committed and pending[0][0] is not None:  # a scan: what it published is not published again
            published = {row[3] for row in pending}
            self._committed = deque(row for row in self._committed if row[3] not in published)
        self.published_total += len(pending)
        PUBLISHED.labels(self.service).inc(len(pending))
        return len(pending)

    async def backlog(self) -> int:
        async with self.sessions() as session:
            count = (
                await session.exec(
                    select(func.count()).select_from(OutboxEntry).where(col(OutboxEntry.published_at).is_(None))
                )
            ).one()
            await session.rollback()
            return max(0, int(count) - len(self._unmarked))
