"""Group commit: writers arriving together share one transaction, and each learns whether its own
write committed."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.store import READ_ONLY, GroupCommit, WalCheckpoints, make_engine, session_factory

ROOT = Path(__file__).resolve().parents[2]


async def test_writers_arriving_together_share_transactions_and_a_failed_one_fails_only_its_own_batch(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (word TEXT NOT NULL UNIQUE)"))
    transactions: list[list[str]] = []

    async def write(session, words: list[str]) -> None:
        transactions.append(words)
        for word in words:
            await session.execute(text("INSERT INTO note (word) VALUES (:word)"), {"word": word})

    notes = GroupCommit(session_factory(engine), write)
    try:
        await asyncio.gather(*(notes.submit(f"first-{n}") for n in range(10)))
        assert len(transactions) < 10 and sorted(sum(transactions, [])) == sorted(f"first-{n}" for n in range(10))

        await notes.submit("taken")
        transactions.clear()
        outcomes = await asyncio.gather(notes.submit("held-open"), notes.submit("taken"), notes.submit("second"),
                                        return_exceptions=True)
        failed_together = next(words for words in transactions if "taken" in words)
        for word, outcome in zip(("held-open", "taken", "second"), outcomes, strict=True):
            if word in failed_together:
                assert isinstance(outcome, Exception) and "UNIQUE" in str(outcome)
            else:
                assert outcome is None

        await notes.submit("after")
        async with engine.connect() as conn:
            stored = {row[0] for row in await conn.execute(text("SELECT word FROM note"))}
        assert stored == {f"first-{n}" for n in range(10)} | {"taken", "after"} | (
            {"held-open", "second"} - set(failed_together))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("cancelled_first", [True, False])
async def test_a_cancelled_writer_leaves_nothing_written_and_does_not_stop_the_others(tmp_path, cancelled_first):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'group.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (word TEXT NOT NULL)"))

    writing_one, go_on = asyncio.Event(), asyncio.Event()

    async def write(session, words: list[str]) -> None:
        if "one" in words:  # the first transaction stays open until the cancellation
            writing_one.set()
            await go_on.wait()
        await session.execute(text("INSERT INTO note (word) VALUES (:word)"), [{"word": w} for w in words])

    notes = GroupCommit(session_factory(engine), write)
    try:
        first = asyncio.create_task(notes.submit("one"))
        await writing_one.wait()
        second = asyncio.create_task(notes.submit("two"))
        await asyncio.sleep(0)  # the second writer waits for its turn
        (first if cancelled_first else second).cancel()
        go_on.set()
        await asyncio.gather(first, second, return_exceptions=True)
        await notes.submit("three")
        async with engine.connect() as conn:
            stored = [row[0] for row in await conn.execute(text("SELECT word FROM note"))]
        assert stored == (["two", "three"] if cancelled_first else ["one", "three"])
    finally:
        await engine.dispose()


async def test_a_read_only_session_reads_beside_a_writer_that_holds_the_lock(tmp_path):
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (word TEXT NOT NULL)"))
        await conn.execute(text("INSERT INTO note (word) VALUES ('committed')"))
    sessions = session_factory(engine)
    try:
        async with sessions() as writer:
            await writer.execute(text("INSERT INTO note (word) VALUES ('not yet')"))  # holds the write lock

            async def read() -> list[str]:
                async with sessions() as reader:
                    await reader.connection(execution_options=READ_ONLY)
                    return [row[0] for row in await reader.execute(text("SELECT word FROM note"))]

            # A session that may write would wait for the lock (BEGIN IMMEDIATE) for up to 30 s.
            assert await asyncio.wait_for(read(), timeout=5) == ["committed"]
            await writer.rollback()
    finally:
        await engine.dispose()


def test_a_process_that_never_closed_its_store_still_exits(tmp_path):
    """A connection left open (an engine never disposed, a stop that timed out) must not hold the
    process at exit: its worker thread is a daemon."""
    program = (
        "import asyncio\n"
        "from sqlalchemy import text\n"
        "from shared.store import make_engine\n"
        "LEFT_OPEN = []\n"
        "async def main():\n"
        f"    engine = make_engine('sqlite+aiosqlite:///{tmp_path / 'open.db'}')\n"
        "    connection = await engine.connect()\n"
        "    await connection.execute(text('SELECT 1'))\n"
        "    LEFT_OPEN.append((engine, connection))\n"
        "asyncio.run(main())\n"
    )
    finished = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, timeout=60)
    assert finished.returncode == 0, finished.stderr.decode()


async def test_writers_of_one_process_take_turns_and_one_held_by_another_process_does_not_stall_the_loop(tmp_path):
    path = tmp_path / "turns.db"
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (word TEXT NOT NULL)"))
    sessions = session_factory(engine)

    async def write(word: str) -> None:
        async with sessions() as session:
            await session.execute(text("INSERT INTO note (word) VALUES (:word)"), {"word": word})
            await asyncio.sleep(0)  # another writer of this process gets the loop while the lock is held
            await session.commit()

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    other_process = sqlite3.connect(path, isolation_level=None)  # as a command-line tool would
    try:
        await asyncio.gather(*(write(f"first-{n}") for n in range(40)))
        other_process.execute("BEGIN IMMEDIATE")
        other_process.execute("INSERT INTO note (word) VALUES ('from the tool')")
        waiting = asyncio.gather(*(write(f"second-{n}") for n in range(5)))
        ticks_before = ticks
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert ticks - ticks_before >= 10  # the loop kept running while the writers waited
        other_process.execute("COMMIT")
        await asyncio.wait_for(waiting, timeout=10)
        async with engine.connect() as conn:
            stored = {row[0] for row in await conn.execute(text("SELECT word FROM note"))}
        assert stored == {f"first-{n}" for n in range(40)} | {f"second-{n}" for n in range(5)} | {"from the tool"}
    finally:
        ticker.cancel()
        other_process.close()
        await engine.dispose()


async def _notes_store(store):
    """A store whose connections leave checkpoints to a WalCheckpoints task, with a table of notes."""
    engine = make_engine(f"sqlite+aiosqlite:///{store}", checkpoints_elsewhere=True)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE note (body TEXT NOT NULL)"))
    return engine


async def _write_pages(engine, batch: int, notes: int) -> None:
    """`notes` rows of about a page each, in one transaction."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO note (body) VALUES (:body)"),
                           [{"body": f"{batch}-{n}-" + "x" * 4000} for n in range(notes)])


async def test_the_write_ahead_log_is_copied_into_the_store_by_the_checkpoint_task_not_by_commits(tmp_path):
    store = tmp_path / "checkpoints.db"
    engine = await _notes_store(store)
    for batch in range(40):  # about 2,000 pages of log, twice what makes a commit checkpoint by default
        await _write_pages(engine, batch, 50)
    try:
        assert store.stat().st_size < 100_000, "a commit copied the log into the store"
        checkpoints = WalCheckpoints(str(store), every=0.05)
        task = asyncio.create_task(checkpoints.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if store.stat().st_size > 8_000_000:
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert store.stat().st_size > 8_000_000 and checkpoints.last_error is None
        with sqlite3.connect(store) as other:  # what a backup or another process reads
            assert other.execute("SELECT count(*) FROM note").fetchone()[0] == 2000
    finally:
        await engine.dispose()


async def test_a_quiet_store_is_not_opened_by_the_checkpoint_task_and_a_later_write_is_still_copied(tmp_path):
    """An idle service does not open its store twice a second; the first write after a quiet
    while is copied into the store as promptly as any other."""
    store = tmp_path / "quiet.db"
    engine = await _notes_store(store)
    checkpoints = WalCheckpoints(str(store), every=0.01)
    task = asyncio.create_task(checkpoints.run())

    async def copied_beyond(size: int) -> bool:
        for _ in range(200):
            if store.stat().st_size > size:
                return True
            await asyncio.sleep(0.01)
        return False

    try:
        await _write_pages(engine, 0, 50)
        assert await copied_beyond(150_000)
        await asyncio.sleep(0.2)  # the rounds under way when it was copied have ended
        rounds = checkpoints.rounds
        await asyncio.sleep(0.3)  # about 30 rounds' time, nothing written
        assert checkpoints.rounds == rounds

        await _write_pages(engine, 1, 50)
        assert await copied_beyond(350_000)
        assert checkpoints.rounds > rounds and checkpoints.last_error is None
        with sqlite3.connect(store) as other:
            assert other.execute("SELECT count(*) FROM note").fetchone()[0] == 100
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await engine.dispose()


async def test_stopping_the_checkpoint_task_midway_leaves_the_store_whole(tmp_path):
    """The service stops its checkpoint task at any moment, often while a round runs on its thread."""
    store = tmp_path / "stopping.db"
    engine = await _notes_store(store)
    try:
        for round_ in range(30):
            await _write_pages(engine, round_, 20)
            task = asyncio.create_task(WalCheckpoints(str(store), every=0).run())
            await asyncio.sleep(0.001 * (round_ % 5))
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0.2)  # a round left running finishes on its thread
        with sqlite3.connect(store) as other:
            assert other.execute("SELECT count(*) FROM note").fetchone()[0] == 600
            assert other.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        await engine.dispose()
