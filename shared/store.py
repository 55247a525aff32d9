"""Engine and session factories for a service's own store: SQLite by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiosqlite
import structlog
from sqlalchemy import Table, event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

log = structlog.get_logger("store")


def async_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.split(":///", 1)[1]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite store (None for PostgreSQL or a database in memory)."""
    if not is_sqlite(url):
        return None
    return _file_of(async_url(url).split(":///", 1)[1])


def _file_of(path: str) -> str | None:
    """The file behind a SQLite database path (None for one in memory or given as a URI)."""
    return None if not path or path == ":memory:" or path.startswith("file:") else path


def make_engine(url: str, *, checkpoints_elsewhere: bool = False) -> AsyncEngine:
    """checkpoints_elsewhere: the engine's connections never copy the write-ahead log back into the
    database file themselves; a `WalCheckpoints` task must run beside them."""
    url = async_url(url)
    if not is_sqlite(url):
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, pool_timeout=10)

    path = url.split(":///", 1)[1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # Few connections: SQLite lets one write at a time, and more connections only wait for its lock
    # (measured: recording requests at concurrency 32, 60 a second with four, 42 with fifteen). All
    # kept open: an overflow connection, closed on return, cost a thread and a connect each time.
    engine = create_async_engine(url, async_creator=lambda: _connect(path or ":memory:"), pool_size=4, max_overflow=0,
                                 pool_timeout=30)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn, _record):
        # Autocommit at the driver level so that SQLAlchemy's BEGIN below is the one that counts.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        if checkpoints_elsewhere:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn):
        # Take the write lock up front (after this process's turn, _FewerHops) instead of failing with
        # SQLITE_BUSY when a read transaction tries to upgrade. A session that only reads says so
        # (READ_ONLY) and reads its snapshot beside the writer (WAL), without waiting for it.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("read_only") else "BEGIN IMMEDIATE")

    return engine


class _FewerHops(aiosqlite.Connection):
    """aiosqlite hands every call to its own thread and back, and in this kind of sandbox a hop
    costs about 300 µs of CPU (a queue, a futex and a wake-up of the loop): more than SQLite takes
    to answer. Here every call runs on the event loop, except connect and close. The one call that
    could wait long, BEGIN IMMEDIATE for the write lock, waits instead for this process's own
    writer lock of that file (first come, first served) and then finds SQLite's lock free; only
    when another process holds it (a command-line tool) does it wait on the thread."""

    def __init__(self, path: str, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A connection left unclosed (an engine never disposed) must not keep the process from
        # exiting, as its thread otherwise would; SQLite's journal makes an exit mid-write safe.
        self._thread.daemon = True
        self._path = os.path.realpath(file) if (file := _file_of(path)) else ""
        self._writer_turn: asyncio.Lock | None = None  # held from BEGIN IMMEDIATE to the transaction's end

    async def _execute(self, fn, *args, **kwargs):
        if not (self._running and self._connection is not None) or _on_thread(fn):
            return await super()._execute(fn, *args, **kwargs)
        if _is_begin_immediate(fn, args):
            return await self._begin_immediate(fn, *args)
        try:
            return fn(*args, **kwargs)
        finally:
            if self._writer_turn is not None and not self._connection.in_transaction:
                self._end_turn()

    async def _begin_immediate(self, execute, statement, *args):
        turn = _writer_turn(self._path)
        if turn is not None:
            try:
                await asyncio.wait_for(turn.acquire(), LOCK_WAIT_SECONDS)
            except TimeoutError:
                raise sqlite3.OperationalError("database is locked: no turn to write within "
                                               f"{LOCK_WAIT_SECONDS:.0f} s") from None
            self._writer_turn = turn
        try:
            try:
                return _begin_at_once(execute, statement, *args)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise
            return await super()._execute(_begin_waiting, execute, statement, *args)
        except BaseException:
            self._end_turn()
            raise

    def _end_turn(self) -> None:
        turn, self._writer_turn = self._writer_turn, None
        if turn is not None:
            turn.release()

    def stop(self):
        self._end_turn()
        return super().stop()


# Per event loop and database file: the writers of this process take turns here.
_WRITER_TURNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _writer_turn(path: str) -> asyncio.Lock | None:
    if not path:
        return None  # a database in memory is the connection's own
    turns = _WRITER_TURNS.setdefault(asyncio.get_running_loop(), {})
    if path not in turns:
        turns[path] = asyncio.Lock()
    return turns[path]


def _on_thread(fn) -> bool:
    """Closing may wait for the disk; everything else SQLite answers at once."""
    return isinstance(getattr(fn, "__self__", None), sqlite3.Connection) and fn.__name__ == "close"


def _is_begin_immediate(fn, args) -> bool:
    return (isinstance(getattr(fn, "__self__", None), sqlite3.Cursor) and fn.__name__ == "execute"
            and bool(args) and isinstance(args[0], str) and args[0].lstrip()[:15].upper() == "BEGIN IMMEDIATE")


LOCK_WAIT_SECONDS = 30.0


def _begin_at_once(execute, statement, *args):
    """BEGIN IMMEDIATE that fails at once ("database is locked") rather than wait on the loop."""
    connection = execute.__self__.connection
    connection.execute("PRAGMA busy_timeout=0")
    try:
        return execute(statement, *args)
    finally:
        connection.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_SECONDS * 1000)}")


def _begin_waiting(execute, statement, *args):
    """BEGIN IMMEDIATE waits here, on aiosqlite's thread, while another process holds the write
    lock. SQLite's own busy handler sleeps up to 100 ms between tries, so a freed lock would sit
    idle most of the time: this tries again within 2 ms."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    pause = 0.0002
    while True:
        try:
            return _begin_at_once(execute, statement, *args)
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.002)


async def _connect(path: str) -> aiosqlite.Connection:
    connection = _FewerHops(path, lambda: sqlite3.connect(path, timeout=30, check_same_thread=False), 64)
    try:
        return await connection
    except BaseException:
        connection.stop()  # a connect cut short (a cancelled request) leaves no thread behind
        raise


class WalCheckpoints:
    """SQLite copies its write-ahead log back into the database file, and syncs both, inside the
    commit that finds the log past 1,000 pages; with commits on the event loop, that sync held the
    loop. Here it runs on a thread with a connection of its own, every `every` seconds, beside the
    service's connections (`make_engine(..., checkpoints_elsewhere=True)`). PASSIVE: it copies what
    no reader still needs and never waits for, nor holds up, a writer."""

    def __init__(self, path: str, every: float = 0.5):
        self.path = path
        self.every = every
        self.last_error: str | None = None
        self.rounds = 0  # rounds that opened the store; a quiet store is not opened
        self._copied: tuple[int, int] | None = None  # the log's (size, time) when a round last copied all of it
        # One thread of its own: rounds spread over the default pool's threads left memory in each.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wal-checkpoints")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.every)
            # Nothing written since a round copied the whole log: opening the store would cost a
            # thread hop, a connection and its locks twice a second for nothing.
            wal = self._wal_state()
            if wal is not None and wal == self._copied:
                continue
            try:
                await loop.run_in_executor(self._thread, self._checkpoint, wal)
                self.last_error = None
            except sqlite3.Error as exc:  # the next round tries again; the log only grows meanwhile
                if self.last_error is None:
                    log.warning("store.checkpoint_failed", store=os.path.basename(self.path), error=type(exc).__name__)
                self.last_error = type(exc).__name__

    def _checkpoint(self, wal: tuple[int, int] | None) -> None:
        # A connection of each round's own, opened and closed on its thread: a task cancelled
        # mid-round leaves the thread to finish, and closing a connection another thread is still
        # using crashes the process.
        self.rounds += 1
        connection = sqlite3.connect(self.path, timeout=LOCK_WAIT_SECONDS)
        try:
            _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            connection.close()
        # A reader still on older pages keeps some of the log from being copied: the next round tries again.
        self._copied = wal if frames == copied else None

    def _wal_state(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.path + "-wal")
        except FileNotFoundError:
            return None
        return status.st_size, status.st_mtime_ns


class GroupCommit:
    """Small writes that arrive while one transaction is being written wait and go into the next
    one together: one lock wait and one commit for many, and each writer returns only once its
    own write has committed (or raises what made the transaction fail). `sessions` may also be a
    unit-of-work factory: `write` then gets the unit of work, and its events commit with the rows."""

    def __init__(self, sessions, write: Callable[[AsyncSession, list], Awaitable[None]]):
        self.sessions = sessions
        self.write = write
        self._waiting: list[tuple[object, asyncio.Future]] = []
        self._turn = asyncio.Lock()

    async def submit(self, item) -> None:
        committed = asyncio.get_running_loop().create_future()
        self._waiting.append((item, committed))
        try:
            await self._turn.acquire()
        except asyncio.CancelledError:
            self._waiting = [waiting for waiting in self._waiting if waiting[1] is not committed]
            raise
        try:
            if not committed.done():
                batch, self._waiting = self._waiting, []
                try:
                    async with self.sessions() as session:
                        await self.write(session, [item for item, _ in batch])
                        await session.commit()
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else RuntimeError("the transaction was interrupted")
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(failure)
                    if not isinstance(exc, Exception):
                        committed.exception()  # retrieved: the interruption itself goes on below
                        raise
                else:
                    for _, waiting in batch:
                        if not waiting.done():  # a writer cancelled meanwhile is not answered
                            waiting.set_result(None)
        finally:
            self._turn.release()
        await committed


READ_ONLY = {"read_only": True}  # Session.connection(execution_options=READ_ONLY): no write lock on SQLite


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


async def create_tables(engine: AsyncEngine, tables: list[Table]) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: SQLModel.metadata.create_all(sync_conn, tables=tables))


async def drop_tables(engine: AsyncEngine, tables: list[Table]) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(lambda sync_conn: SQLModel.metadata.drop_all(sync_conn, tables=tables))
