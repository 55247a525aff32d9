"""Notify's migrations build the store its models describe, and carry the walking skeleton's
delivery log over."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from services.notify.store import TABLES
from shared.messaging.tables import MESSAGING_TABLES
from shared.migrations import service_metadata, upgrade
from shared.store import make_engine
from tests.conftest import store_kinds


@pytest.mark.parametrize("store", store_kinds())
async def test_the_migrations_build_the_store_the_models_describe_and_keep_old_deliveries(store, make_database):
    engine = make_engine(make_database(store, "notify_migrations"))
    try:
        await upgrade(engine, "notify", "0001")
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO notify_delivery (notification_ref, cause_event_id, cause_event_type, channel, recipient, "
                "recipient_kind, template, language, context, status, attempts, created_at, next_attempt_at) VALUES "
                "('N-old', 'e-1', 'PersonAdmitted', 'email', 'coordination@refuge.example', 'social_coordinator', "
                "'person_admitted', 'fr', '{}', 'sent', 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        await upgrade(engine, "notify")
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), service_metadata([*MESSAGING_TABLES, *TABLES])))
            old = (await conn.execute(text(
                "SELECT recipient, audience, attempt_budget_from, personal_data_shared FROM notify_delivery"))).one()
        assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table"
                                        and d[1].name.startswith("alembic_version"))] == []
        assert tuple(old) == ("staff:social_coordinator", "social_coordinator", 0, False)
    finally:
        await engine.dispose()
