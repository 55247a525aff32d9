"""Sign-in hardening: refused sign-ins are counted per user name and per address in the store (so a
restart does not reset them) and answered 429 with Retry-After; cookies are Secure behind https."""

from __future__ import annotations

import httpx

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.auth import Role

PASSWORD = "a long enough password"


def intake_app(tmp_path, redis_url, namespace, **extra):
    return create_app(IntakeSettings(
        redis_url=redis_url, database_url=f"sqlite+aiosqlite:///{tmp_path / 'intake.db'}", namespace=namespace,
        keys_database_url=f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}", consumer_name="intake-sign-in-test",
        argon2_time_cost=1, argon2_memory_kib=1024, housing_url="http://127.0.0.1:9", **extra))


async def attempts(app, *tries, address="10.0.0.1"):
    transport = httpx.ASGITransport(app=app, client=(address, 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://intake.test") as client:
        return [await client.post("/api/session", json={"username": u, "password": p}) for u, p in tries]


async def test_guessing_is_slowed_per_user_name_and_per_address_and_survives_a_restart(tmp_path, redis_url, namespace):
    app = intake_app(tmp_path, redis_url, namespace)
    async with app.router.lifespan_context(app):
        await app.state.staff_accounts.create("ana", PASSWORD, [Role.intake_worker])
        tried = await attempts(app, *[("ana", "wrong guess")] * 5, ("ana", PASSWORD))
        assert [r.status_code for r in tried] == [401] * 5 + [429]
        assert 0 < int(tried[-1].headers["retry-after"]) <= 900

    restarted = intake_app(tmp_path, redis_url, namespace)
    async with restarted.router.lifespan_context(restarted):
        # From another address the user name is still held back; another account from there is not.
        [held] = await attempts(restarted, ("ana", PASSWORD), address="10.0.0.2")
        assert held.status_code == 429
        await restarted.state.staff_accounts.create("bo", PASSWORD, [Role.intake_worker])
        [ok] = await attempts(restarted, ("bo", PASSWORD), address="10.0.0.2")
        assert ok.status_code == 200
        # Many user names guessed from one address: the address is held back.
        guesses = await attempts(restarted, *[(f"user{i}", "x") for i in range(5)], ("bo", PASSWORD),
                                 address="10.0.0.3")
        assert [r.status_code for r in guesses] == [401] * 5 + [429]


async def test_the_session_cookie_is_secure_when_the_public_address_is_https(tmp_path, redis_url, namespace):
    app = intake_app(tmp_path, redis_url, namespace, public_base_url="https://intake.refuge.example")
    async with app.router.lifespan_context(app):
        await app.state.staff_accounts.create("ana", PASSWORD, [Role.intake_worker])
        [signed_in] = await attempts(app, ("ana", PASSWORD))
    assert signed_in.status_code == 200
    cookie = signed_in.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
