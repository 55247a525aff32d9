"""Intake's migrations build the store its models describe, and carry the walking skeleton's case files
over with the keys that recognise a person who calls again."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from services.intake.store import TABLES
from shared.messaging.tables import MESSAGING_TABLES
from shared.migrations import service_metadata, upgrade
from shared.store import make_engine
from tests.conftest import store_kinds


@pytest.mark.parametrize("store", store_kinds())
async def test_the_migrations_build_the_store_the_models_describe_and_keep_old_case_files(store, make_database):
    engine = make_engine(make_database(store, "intake_migrations"))
    try:
        await upgrade(engine, "intake", "0001")
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO intake_case_file (person_ref, name, language, phone, email, safe_to_leave_message, created_at) "
                "VALUES ('P-0123456789ab', 'Zoë De-Smet', 'nl', '+32 470 11 22 33', 'Zoe@Example.org', false, "
                "CURRENT_TIMESTAMP)"))
            await conn.execute(text(
                "INSERT INTO intake_request (request_ref, person_ref, channel, caller, situation, urgency, needs, "
                "received_at, recorded_by) VALUES ('R-0123456789ab', 'P-0123456789ab', 'phone', 'self', 'excluded', "
                "'days', '[]', CURRENT_TIMESTAMP, 'api')"))
        # 0005 seals personal fields with per-person keys and drops the plaintext columns, so the keys
        # computed from the plaintext are checked at the revision before it.
        await upgrade(engine, "intake", "0004")
        async with engine.connect() as conn:
            case_file = (await conn.execute(text(
                "SELECT name_key, phone_key, email_key, preferred_contact, created_by FROM intake_case_file"))).one()
            request = (await conn.execute(text("SELECT needs_review, follow_up_on FROM intake_request"))).one()
        await upgrade(engine, "intake")
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), service_metadata([*MESSAGING_TABLES, *TABLES])))
        assert [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table"
                                        and d[1].name.startswith("alembic_version"))] == []
        assert tuple(case_file) == ("zoe de smet", "470112233", "zoe@example.org", "phone", "api")
        assert (bool(request[0]), request[1]) == (False, None)
    finally:
        await engine.dispose()
