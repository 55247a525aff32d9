"""Unit of work: one transaction holding the state change and the events it emits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from shared.events import Envelope, Event, stream_name
from shared.events.envelope import ANY_PRODUCER
from shared.observability import current_traceparent

from .faults import SPEC as FAULTS
from .faults import fault_point
from .tables import InboxEntry, OutboxEntry


OUTBOX_ROW = insert(OutboxEntry.__table__)
INBOX_ROW = insert(InboxEntry.__table__)


class StaleRows(RuntimeError):
    """A deferred write found rows changed since the batch read them."""


class UnitOfWork:
    def __init__(self, session: AsyncSession, namespace: str, on_commit: Callable[[list[dict]], None],
                 service: str | None = None):
        self.session = session
        self.namespace = namespace
        self.service = service
        self._on_commit = on_commit
        # Outbox and inbox rows are deferred writes like any other (one statement per table for
        # the whole batch); the outbox rows are also handed to on_commit once committed.
        self._outbox: list[dict] = []
        self.locks: set[str] = set()  # row locks a service took in this transaction, by its own names
        # What a batch's `prepare` read for its handlers, by the service's own keys; gone once the
        # deferred writes below are in the store (consumer.py).
        self.memo: dict = {}
        self._deferred: dict = {}  # statement -> (rows, each row must change one row)

    def emit(self, event: Event, *, causation: Envelope | None = None, correlation_id: str | None = None) -> Envelope:
        producer = event.producer
        if producer == ANY_PRODUCER:
            if self.service is None:
                raise RuntimeError(f"{event.event_type} is published by any service: this unit of work has none")
            producer = self.service
        envelope = Envelope.wrap(event, causation=causation, correlation_id=correlation_id,
                                 traceparent=current_traceparent(), producer=producer)
        self.emit_envelope(envelope)
        return envelope

    def emit_envelope(self, envelope: Envelope) -> None:
        """An envelope made beforehand (with the trace of the request it belongs to) goes out with this commit."""
        row = {
            "event_id": envelope.event_id,
            "event_type": envelope.type,
            "stream": stream_name(self.namespace, envelope.producer),
            "body": envelope.model_dump_json(),
            "created_at": datetime.now(UTC),
        }
        self.defer(OUTBOX_ROW, row)
        self._outbox.append(row)

    def handled(self, envelope: Envelope, stream: str) -> None:
        """The inbox row that makes a redelivery of this event a no-op, committed with its effects."""
        self.defer(INBOX_ROW, {"event_id": envelope.event_id, "event_type": envelope.type, "stream": stream,
                               "handled_at": datetime.now(UTC)})

    def defer(self, statement, row: dict, *, changes_one_row: bool = False) -> None:
        """Write `row` with `statement` later, with every row the batch deferred for it in one
        executemany, before anything else reads the store or at commit. `changes_one_row`: the
        write fails (and the batch is retried event by event) unless each row changed exactly one."""
        rows, _ = self._deferred.setdefault(statement, ([], changes_one_row))
        rows.append(row)

    async def write_deferred(self) -> None:
        deferred, self._deferred = self._deferred, {}
        for statement, (rows, changes_one_row) in deferred.items():
            if changes_one_row and not self.session.bind.dialect.supports_sane_multi_rowcount:
                batches = [[row] for row in rows]  # asyncpg reports no count for an executemany
            else:
                batches = [rows]
            for batch in batches:
                result = await self.session.execute(statement, batch)
                if changes_one_row and result.rowcount != len(batch):
                    raise StaleRows(f"{len(batch)} rows expected to change, {result.rowcount} did")
        self.memo.clear()

    async def commit(self) -> None:
        await self.write_deferred()
        await self.session.commit()
        outbox, self._outbox = self._outbox, []
        self.locks.clear()
        if outbox:
            if FAULTS:
                await fault_point("after_outbox_commit")
            self._on_commit(outbox)


class UnitOfWorkFactory:
    """`async with uow_factory() as uow:` opens a session; leaving without commit rolls back."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], namespace: str,
                 on_commit: Callable[[list[dict]], None],
                 service: str | None = None):
        self.sessions = sessions
        self.namespace = namespace
        self.on_commit = on_commit
        self.service = service

    def __call__(self) -> _UowContext:
        return _UowContext(self)


class _UowContext:
    def __init__(self, factory: UnitOfWorkFactory):
        self.factory = factory
        self.session: AsyncSession | None = None

    async def __aenter__(self) -> UnitOfWork:
        self.session = self.factory.sessions()
        return UnitOfWork(self.session, self.factory.namespace, self.factory.on_commit, self.factory.service)

    async def __aexit__(self, *exc) -> None:
        assert self.session is not None
        await self.session.rollback()
        await self.session.close()
