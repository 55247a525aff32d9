"""Fixtures: a real Redis (URL from the environment, else a container, else an embedded server),
SQLite and, when a URL is given, PostgreSQL; an SMTP sink; the whole stack as processes."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from shared.testing.redis_server import RedisServer, free_port
from shared.testing.smtp_sink import SmtpSink
from shared.testing.stack import Stack


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    if url := os.environ.get("REFUGE_TEST_REDIS_URL"):
        yield url
        return
    if _docker_answers():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres_server_url():
    """Admin URL of a PostgreSQL server, or None: store tests then run on SQLite only."""
    if url := os.environ.get("REFUGE_TEST_POSTGRES_URL"):
        return url
    return None


async def _create_database(admin_url: str, name: str) -> str:
    import asyncpg

    from shared.store import async_url

    plain = async_url(admin_url).replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _db = plain.rpartition("/")
    return f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"


async def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    from shared.store import async_url

    plain = async_url(admin_url).replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _run(coro):
    """Run a coroutine to completion from sync code, whether or not a loop is running here."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture
def make_database(tmp_path, postgres_server_url):
    """make_database(kind, name) -> URL of a fresh, empty database of that kind."""
    created: list[str] = []

    def make(kind: str = "sqlite", name: str = "store") -> str:
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
        assert postgres_server_url, "PostgreSQL store tests need REFUGE_TEST_POSTGRES_URL"
        db = f"refuge_{name}_{uuid.uuid4().hex[:10]}"
        created.append(db)
        return _run(_create_database(postgres_server_url, db))

    yield make
    for db in created:
        _run(_drop_database(postgres_server_url, db))


def store_kinds(postgres_url: str | None = os.environ.get("REFUGE_TEST_POSTGRES_URL")) -> list[str]:
    return ["sqlite", "postgres"] if postgres_url else ["sqlite"]


@pytest.fixture
def namespace() -> str:
    """Each test gets its own stream names on the shared Redis."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def smtp_sink(tmp_path):
    with SmtpSink(free_port(), tmp_path / "mail") as sink:
        yield sink


@pytest.fixture
def stack_factory(tmp_path, redis_url, namespace, smtp_sink):
    stacks: list[Stack] = []

    def make(redis: str | None = None, **kwargs) -> Stack:
        extra_env = {
            **{f"{s}_RECLAIM_IDLE_MS": "3000" for s in ("INTAKE", "HOUSING", "REFERRALS", "NOTIFY")},
            "NOTIFY_RETRY_BASE_SECONDS": "0.2",
            **kwargs.pop("extra_env", {}),
        }
        stack = Stack(workdir=tmp_path / f"stack{len(stacks)}", redis_url=redis or redis_url, namespace=namespace,
                      smtp_port=smtp_sink.port, extra_env=extra_env, **kwargs)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own, for tests that stop or restart it."""
    server = RedisServer(tmp_path / "own-redis").start()
    yield server
    server.stop()


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parts[-2] == "e2e":
            item.add_marker(pytest.mark.e2e)
