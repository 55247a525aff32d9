"""Every service's store upgrades by its migrations: from empty, and from the walking skeleton's
schema holding data, on SQLite and PostgreSQL, keeping every row."""

import asyncio
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, MetaData, String, Text, func, inspect, select

from shared.migrations import SERVICES, STORES, alembic_config, current, newest_revision, upgrade
from shared.store import make_engine
from tests.conftest import store_kinds


def filler(column, n: int):
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, Integer):
        return n
    if isinstance(kind, DateTime):
        return datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    if isinstance(kind, Date):
        return date(2026, 1, 1)
    if isinstance(kind, JSON):
        return {"n": n}
    if isinstance(kind, String | Text):
        length = getattr(kind, "length", None) or 40
        return f"v{n}-{column.name}"[:length]
    raise AssertionError(f"no filler for {column.table.name}.{column.name} ({kind})")


async def fill_every_table(engine, rows_per_table: int = 2) -> dict[str, int]:
    """Insert rows into every table of the current schema, parents before children."""
    async with engine.begin() as conn:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        counts = {}
        for table in metadata.sorted_tables:
            if table.name.startswith("alembic_version"):
                continue
            for n in range(1, rows_per_table + 1):
                values = {}
                for column in table.columns:
                    if column.primary_key and isinstance(column.type, Integer):
                        continue
                    # every column filled, as the skeleton's own code always did
                    values[column.name] = n if column.foreign_keys else filler(column, n)
                await conn.execute(table.insert().values(**values))
            counts[table.name] = rows_per_table
        return counts


async def row_counts(engine, tables) -> dict[str, int]:
    async with engine.connect() as conn:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        return {name: (await conn.execute(select(func.count()).select_from(metadata.tables[name]))).scalar_one()
                for name in tables if name in metadata.tables}


@pytest.mark.parametrize("store", store_kinds())
@pytest.mark.parametrize("service", SERVICES)
async def test_a_store_upgrades_from_empty_and_from_the_skeleton_schema_with_its_data(service, store, make_database):
    empty = make_engine(make_database(store, f"{service}_empty"))
    await upgrade(empty, service)
    head = await current(empty, service)
    assert head and head != "0001"
    async with empty.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
    assert "outbox" in tables and "inbox" in tables
    await empty.dispose()

    old = make_engine(make_database(store, f"{service}_old"))
    await upgrade(old, service, "0001")
    before = await fill_every_table(old)
    await upgrade(old, service)
    assert await current(old, service) == head
    after = await row_counts(old, before)
    kept = {name: count for name, count in before.items() if name in after}
    assert kept and after == kept, f"rows lost in {service}'s upgrade"
    await old.dispose()


@pytest.mark.parametrize("store", store_kinds())
async def test_intake_key_store_is_made_by_its_migration_and_one_made_before_keeps_its_keys(store, make_database):
    from services.intake.store import PersonKey
    from shared.store import create_tables

    empty = make_engine(make_database(store, "intake_keys_empty"))
    await upgrade(empty, "intake_keys")
    assert await current(empty, "intake_keys") == "0001"
    async with empty.connect() as conn:
        assert "intake_person_key" in await conn.run_sync(lambda c: inspect(c).get_table_names())
    await empty.dispose()

    # A key store that an earlier intake made with bare tables, holding keys.
    before = make_engine(make_database(store, "intake_keys_before"))
    await create_tables(before, [PersonKey.__table__])
    counts = await fill_every_table(before)
    await upgrade(before, "intake_keys")
    assert await current(before, "intake_keys") == "0001"
    assert await row_counts(before, counts) == {"intake_person_key": 2}
    await before.dispose()


def test_the_newest_revision_read_from_the_files_is_alembics_head():
    for store in STORES:
        assert [newest_revision(store)] == ScriptDirectory.from_config(alembic_config(store)).get_heads(), store


ROOT = Path(__file__).resolve().parents[2]
UP_TO_DATE_CHECK = """
import asyncio, sys
from shared.migrations import upgrade
from shared.store import make_engine

async def main(url):
    engine = make_engine(url)
    await upgrade(engine, "housing")
    await engine.dispose()
    print("alembic loaded" if "alembic" in sys.modules else "alembic not loaded")

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.parametrize("store", store_kinds())
async def test_a_service_restarted_on_an_up_to_date_store_does_not_load_alembic(store, make_database):
    """Alembic stays in memory once loaded: a restart on a store at its newest revision skips it;
    a new store, or one left a revision behind by an older release, is upgraded by it."""
    url = make_database(store, "housing")

    async def start() -> str:
        run = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", UP_TO_DATE_CHECK, url], cwd=ROOT,
                                      capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout.strip().splitlines()[-1]

    assert await start() == "alembic loaded"  # a new store
    assert await start() == "alembic not loaded"

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(lambda c: command.downgrade(alembic_config("housing", c), "0002"))
            await conn.commit()
        assert await current(engine, "housing") == "0002"
        assert await start() == "alembic loaded"
        assert await current(engine, "housing") == newest_revision("housing") == "0003"
    finally:
        await engine.dispose()
