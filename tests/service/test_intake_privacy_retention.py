"""Retention: with INTAKE_RETENTION_CLOSED_CASE_DAYS set, case files closed for longer are erased
(ErasureRequested, a reason naming the policy); open ones stay. The clock is injected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.intake.store import Erasure, TimelineEntry
from tests.service.test_intake_api import CALL, STAFF, outbox


async def test_case_files_closed_longer_than_the_policy_are_erased_and_open_ones_kept(tmp_path, redis_url, namespace):
    app = create_app(IntakeSettings(
        redis_url=redis_url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", namespace=namespace,
        keys_database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}", consumer_name="intake-retention-test",
        retention_closed_case_days=30, retention_check_seconds=0.05))
    intake, runtime = app.state.intake, app.state.runtime
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test") as client:
            client.app = app
            left = (await client.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
            staying = (await client.post("/api/requests", json=CALL, headers=STAFF)).json()["person_ref"]
            now = datetime.now(UTC)
            async with runtime.sessions() as session:
                for person_ref, event_type in ((left, "PersonAdmitted"), (left, "PersonDischarged"),
                                               (staying, "PersonAdmitted")):
                    session.add(TimelineEntry(person_ref=person_ref, event_id=f"{person_ref}-{event_type}",
                                              event_type=event_type, occurred_at=now, details={"place_kind": "emergency"}))
                await session.commit()

            # Ten days later nothing is old enough; forty days later the discharged person's file goes.
            intake.now = lambda: now + timedelta(days=10)
            assert await intake.apply_retention(runtime, 30) == []
            intake.now = lambda: now + timedelta(days=40)

            async def erased():  # the background task applies the policy on its own
                return (await client.get(f"/api/case-files/{left}", headers=STAFF)).status_code == 404
            for _ in range(100):
                if await erased():
                    break
                await asyncio.sleep(0.05)
            assert await erased()
            assert (await client.get(f"/api/case-files/{staying}", headers=STAFF)).status_code == 200
            [announced] = await outbox(client, "ErasureRequested")
            assert announced.payload["person_ref"] == left
            async with runtime.sessions() as session:
                from sqlmodel import select
                [erasure] = (await session.exec(select(Erasure))).all()
            assert erasure.requested_by == "retention" and "30 days" in erasure.reason
