"""Every service's store upgrades by its migrations: from empty, and from the walking skeleton's
schema holding data, on SQLite and PostgreSQL, keeping every row."""

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import JSON, Boolean, Date, DateTime, Integer, MetaData, String, Text, func, inspect, select

from shared.migrations import SERVICES, current, upgrade
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
