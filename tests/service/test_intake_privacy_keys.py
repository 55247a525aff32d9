"""Encryption at rest with one key per person: the store file holds no personal value, an erasure
makes even an old copy of the store unreadable, rotating the master key keeps everything readable,
and a search by name still finds the person through keyed hashes."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlmodel import select

from services.intake.app import create_app
from services.intake.keys import KeyRing, KeyRingError, Vault, rotate
from services.intake.settings import IntakeSettings
from services.intake.store import CaseFile
from shared.auth import Role
from shared.store import make_engine, session_factory
from tests.service.test_intake_api import CALL, STAFF, headers

COORDINATOR = headers(Role.social_coordinator, username="lea.coordinator")
PERSONAL = ("Noor", "Vandenberghe", "470 12 34 56", "470123456", "noor@example.org", "Aunt Mieke", "the station",
            "Brother in Ghent", "noor vandenberghe")


def ring_entry(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


def intake_app(tmp_path: Path, redis_url: str, namespace: str, key_ring: str):
    return create_app(IntakeSettings(
        redis_url=redis_url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", namespace=namespace,
        keys_database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake-keys.db'}", consumer_name="intake-keys-test",
        poll_interval_ms=50, counters_cache_seconds=0, key_ring=key_ring, search_key="a test search key"))


async def call_intake(app, *requests):
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake.test") as client:
            return [await client.request(method, url, **kw) for method, url, kw in requests]


async def sealed_case_files(database: Path) -> list[CaseFile]:
    engine = make_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with session_factory(engine)() as session:
            return list((await session.exec(select(CaseFile))).all())
    finally:
        await engine.dispose()


def raw_bytes(database: Path) -> bytes:
    wal = database.with_name(database.name + "-wal")
    return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def test_the_store_holds_no_personal_value_and_an_erasure_shreds_even_an_old_copy(tmp_path, redis_url, namespace):
    ring = ring_entry("k1")
    app = intake_app(tmp_path, redis_url, namespace, ring)
    call = {**CALL, "email": "noor@example.org", "caller_name": "Aunt Mieke", "notes": "Sleeping at the station"}
    [recorded] = await call_intake(app, ("POST", "/api/requests", {"json": call, "headers": STAFF}))
    person_ref, request_ref = recorded.json()["person_ref"], recorded.json()["request_ref"]
    [followed, found, found_by_start, again, case] = await call_intake(
        app,
        ("POST", f"/api/requests/{request_ref}/follow-up", {"json": {"note": "Brother in Ghent"}, "headers": STAFF}),
        ("GET", "/api/case-files", {"params": {"q": "noor vandenberghe"}, "headers": STAFF}),
        ("GET", "/api/case-files", {"params": {"q": "vandenb"}, "headers": STAFF}),
        ("POST", "/api/case-files/matches", {"json": {"name": "NOOR Vandenberghe", "phone": "0470/12.34.56"},
                                             "headers": STAFF}),
        ("GET", f"/api/case-files/{person_ref}", {"headers": STAFF}))
    assert followed.status_code in (200, 201), followed.text
    assert [p["person_ref"] for p in found.json()] == [person_ref] and found.json()[0]["name"] == CALL["name"]
    assert [p["person_ref"] for p in found_by_start.json()] == [person_ref]
    assert again.json()[0]["person_ref"] == person_ref and "same_phone" in again.json()[0]["reasons"]
    assert case.json()["email"] == "noor@example.org" and case.json()["follow_ups"][0]["note"] == "Brother in Ghent"

    database = tmp_path / "intake.db"
    for value in PERSONAL:
        assert value.encode() not in raw_bytes(database), value

    old_copy = tmp_path / "old-copy.db"
    shutil.copy(database, old_copy)
    [erased] = await call_intake(app, ("POST", f"/api/case-files/{person_ref}/erasure",
                                       {"json": {"reason": "asked by the person"}, "headers": COORDINATOR}))
    assert erased.status_code == 201

    # The old copy still holds the sealed case file, but with the master key in hand it no longer opens.
    [sealed] = [c for c in await sealed_case_files(old_copy) if c.person_ref == person_ref]
    assert sealed.sealed
    vault = Vault(KeyRing(ring), "a test search key", f"sqlite+aiosqlite:///{tmp_path / 'intake-keys.db'}")
    try:
        assert await vault.key_for(None, person_ref) is None
        assert Vault.open(await vault.key_for(None, person_ref), person_ref, sealed.sealed) == {}
    finally:
        await vault.close()


async def test_rotating_the_master_key_keeps_every_case_file_readable(tmp_path, redis_url, namespace):
    first, second = ring_entry("k1"), ring_entry("k2")
    [recorded] = await call_intake(intake_app(tmp_path, redis_url, namespace, first),
                                   ("POST", "/api/requests", {"json": CALL, "headers": STAFF}))
    person_ref = recorded.json()["person_ref"]

    vault = Vault(KeyRing(f"{second},{first}"), "a test search key",
                  f"sqlite+aiosqlite:///{tmp_path / 'intake-keys.db'}")
    try:
        assert await rotate(vault) == 1
        assert await rotate(vault) == 0  # already wrapped with the active key
    finally:
        await vault.close()

    # The old master key can now leave the ring.
    [case] = await call_intake(intake_app(tmp_path, redis_url, namespace, second),
                               ("GET", f"/api/case-files/{person_ref}", {"headers": STAFF}))
    assert case.json()["name"] == CALL["name"] and case.json()["phone"] == CALL["phone"]


def test_development_keys_are_refused_outside_development_and_a_malformed_ring_at_start():
    with pytest.raises(ValidationError, match="INTAKE_KEY_RING"):
        IntakeSettings(environment="production", auth_secret="s" * 40)
    with pytest.raises((ValidationError, KeyRingError)):
        IntakeSettings(key_ring="k1:not-base64!")
    with pytest.raises(KeyRingError):
        KeyRing("k1:" + base64.b64encode(b"short").decode())
