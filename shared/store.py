"""Engine and session factories for a service's own store: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiosqlite
from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def async_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if not is_sqlite(url):
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=10)

    path = url.split(":///", 1)[1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url, async_creator=_inline_sqlite(path or ":memory:"),
        # One connection per process: its transactions queue on the pool, an await, rather than
        # on SQLite's busy handler, which sleeps up to 100 ms between tries.
        pool_size=1, max_overflow=0, pool_timeout=60,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn, _record):
        # Autocommit at the driver level so that SQLAlchemy's BEGIN below is the one that counts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn):
        # Take the write lock up front (see _InlineSqlite._begin for the wait) rather than fail
        # with SQLITE_BUSY when a read transaction tries to upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class _InlineSqlite(aiosqlite.Connection):
    """aiosqlite hands every call to a thread of its own and back. On a small VM each hop costs
    about 150 µs, and one event takes dozens of calls, while SQLite answers most of them in a few
    µs: statements run on the event loop instead, and aiosqlite's thread only opens the file."""

    async def _execute(self, fn, *args, **kwargs):
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if args and isinstance(args[0], str) and args[0].startswith("BEGIN"):
            return await self._begin(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def _begin(self, fn, *args, **kwargs):
        """BEGIN IMMEDIATE is the one statement that waits for the write lock. Its holder may be
        another connection of this very process, which needs the loop to finish and let go, so
        the wait is an asyncio sleep, not SQLite's busy handler (its busy timeout is 0)."""
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        pause = 0.001
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)


LOCK_WAIT_SECONDS = 30.0


def _inline_sqlite(path: str):
    async def connect() -> aiosqlite.Connection:
        connection = _InlineSqlite(lambda: sqlite3.connect(path, timeout=0, check_same_thread=False), 64)
        connection._thread.daemon = True
        return await connection

    return connect


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def create_tables(engine: AsyncEngine, tables: list[Table]) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: SQLModel.metadata.create_all(sync_conn, tables=tables))


async def drop_tables(engine: AsyncEngine, tables: list[Table]) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: SQLModel.metadata.drop_all(sync_conn, tables=tables))
