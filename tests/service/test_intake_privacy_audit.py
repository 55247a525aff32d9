"""Every read and write of a case file leaves an audit entry (references only) in a hash chain;
`python -m services.intake.audit verify` finds an entry changed, deleted or reordered."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlmodel import col, select

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from services.intake.store import AuditEntry
from shared.store import make_engine, session_factory
from tests.service.test_intake_api import CALL, STAFF

ROOT = Path(__file__).resolve().parents[2]


def intake_app(tmp_path: Path, redis_url: str, namespace: str):
    url = f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}"
    return url, create_app(IntakeSettings(redis_url=redis_url, database_url=url, namespace=namespace,
                                          keys_database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
                                          consumer_name="intake-audit-test", poll_interval_ms=50))


def verify(database_url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.intake.audit", "verify"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "INTAKE_DATABASE_URL": database_url})


async def test_the_audit_trail_records_each_case_file_access_and_its_check_finds_tampering(tmp_path, redis_url,
                                                                                         namespace):
    url, app = intake_app(tmp_path, redis_url, namespace)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test") as client:
            recorded = (await client.post("/api/requests", json=CALL, headers=STAFF)).json()
            person_ref = recorded["person_ref"]
            await client.get(f"/api/case-files/{person_ref}", headers=STAFF)
            await client.get(f"/api/requests/{recorded['request_ref']}", headers=STAFF)
            await client.get("/api/case-files", params={"q": "noor"}, headers=STAFF)
            await client.get("/api/public/counters")
            await client.get(f"/api/case-files/{person_ref}")  # not signed in: refused, nothing read
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            entries = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
        assert [(e.action, e.route, e.person_ref, e.request_ref) for e in entries] == [
            ("POST", "/api/requests", None, None),
            ("GET", "/api/case-files/{person_ref}", person_ref, None),
            ("GET", "/api/requests/{request_ref}", None, recorded["request_ref"]),
            ("GET", "/api/case-files", None, None),
        ]
        assert {e.actor for e in entries} == {"sam.worker"}
        assert "Noor" not in str([e.model_dump() for e in entries])
        assert verify(url).returncode == 0

        async with engine.begin() as conn:
            await conn.execute(text("UPDATE intake_audit SET actor = 'someone.else' WHERE id = :id"),
                               {"id": entries[1].id})
        changed = verify(url)
        assert changed.returncode == 1 and f"entry {entries[1].id}" in changed.stdout

        async with engine.begin() as conn:
            await conn.execute(text("UPDATE intake_audit SET actor = 'sam.worker' WHERE id = :id"), {"id": entries[1].id})
            await conn.execute(text("DELETE FROM intake_audit WHERE id = :id"), {"id": entries[2].id})
        deleted = verify(url)
        assert deleted.returncode == 1 and f"entry {entries[3].id}" in deleted.stdout
    finally:
        await engine.dispose()


async def test_case_files_read_at_the_same_moment_each_leave_one_entry_in_one_unbroken_chain(tmp_path, redis_url,
                                                                                            namespace):
    url, app = intake_app(tmp_path, redis_url, namespace)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test") as client:
            recorded = await asyncio.gather(*(client.post("/api/requests", json=CALL, headers=STAFF) for _ in range(8)))
            people = [r.json()["person_ref"] for r in recorded]
            reads = await asyncio.gather(*(client.get(f"/api/case-files/{ref}", headers=STAFF) for ref in people * 3))
    assert [r.status_code for r in recorded] == [201] * 8 and [r.status_code for r in reads] == [200] * 24
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            entries = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
    finally:
        await engine.dispose()
    assert len(entries) == 32 and len({e.previous_hash for e in entries}) == 32
    assert sorted(e.person_ref for e in entries if e.action == "GET") == sorted(people * 3)
    assert verify(url).returncode == 0
