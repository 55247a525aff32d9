"""Outbox relay: publishes committed events promptly after commit, and again after any outage."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import orjson
import structlog
from faststream.redis import RedisBroker
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.observability import PUBLISHED

from .faults import SPEC as FAULTS
from .faults import fault_point
from .tables import OutboxEntry

log = structlog.get_logger("outbox")


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
    ):
        self.service = service
        self.broker = broker
        self.sessions = sessions
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.publish_timeout = publish_timeout
        self._wake = asyncio.Event()
        self.last_error: str | None = None
        self.published_total = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = self.poll_seconds
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                while await self.publish_pending() == self.batch_size:
                    pass
                self.last_error = None
                backoff = self.poll_seconds
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis or the store is away: keep the rows, try again later.
                self.last_error = type(exc).__name__
                log.warning("outbox.publish_failed", error=type(exc).__name__)
                backoff = min(backoff * 2, 10.0)

    async def publish_pending(self) -> int:
        async with self.sessions() as session:
            rows = (
                await session.exec(
                    select(OutboxEntry)
                    .where(col(OutboxEntry.published_at).is_(None))
                    .order_by(col(OutboxEntry.id))
                    .limit(self.batch_size)
                )
            ).all()
            pending = [(row.id, row.stream, row.body, row.event_id) for row in rows]
            await session.rollback()
        if not pending:
            return 0

        client = await self.broker.connect()
        async with client.pipeline(transaction=False) as pipe:
            for _, stream, body, event_id in pending:
                envelope = orjson.loads(body)
                await self.broker.publish(
                    envelope,
                    stream=stream,
                    correlation_id=envelope["correlation_id"],
                    headers={"event_id": event_id, "event_type": envelope["type"]},
                    pipeline=pipe,
                )
            await asyncio.wait_for(pipe.execute(), timeout=self.publish_timeout)

        # A crash here republishes these rows; consumers' inboxes drop the duplicates.
        if FAULTS:
            await fault_point("after_publish")
        async with self.sessions() as session:
            await session.exec(
                update(OutboxEntry)
                .where(col(OutboxEntry.id).in_([row_id for row_id, *_ in pending]))
                .values(published_at=datetime.now(UTC))
            )
            await session.commit()
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
            return int(count)
