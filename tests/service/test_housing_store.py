"""Housing's migrations build the schema its tables declare, on SQLite and PostgreSQL, and the
database itself refuses a second open stay in a place whatever the code above it does."""

from datetime import date

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError

from services.housing.handlers import prepare_store, seed_places
from services.housing.store import TABLES, Stay
from shared.messaging import MESSAGING_TABLES
from shared.migrations import service_metadata, upgrade
from shared.store import make_engine, session_factory
from tests.conftest import store_kinds

pytestmark = pytest.mark.parametrize("store", store_kinds())


async def test_migrations_build_the_declared_schema_and_it_guards_one_stay_per_place(store, make_database):
    engine = make_engine(make_database(store, "housing_migrations"))
    try:
        await upgrade(engine, "housing")
        metadata = service_metadata([*MESSAGING_TABLES, *TABLES])
        async with engine.connect() as conn:
            differences = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(
                c, opts={"version_table": "alembic_version_housing", "compare_type": True}), metadata))
        assert differences == []

        sessions = session_factory(engine)
        await prepare_store(sessions)
        assert await seed_places(sessions) == 42
        async with sessions() as session:
            session.add(Stay(stay_ref="S-1", person_ref="P-1", place_id=1, place_kind="emergency",
                             starts_on=date(2026, 1, 1), planned_end=date(2026, 4, 1)))
            await session.commit()
            session.add(Stay(stay_ref="S-2", person_ref="P-2", place_id=1, place_kind="emergency",
                             starts_on=date(2026, 1, 1), planned_end=date(2026, 4, 1)))
            with pytest.raises(IntegrityError):
                await session.commit()
    finally:
        await engine.dispose()
