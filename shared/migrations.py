"""Alembic per service: each service's store is created and upgraded by its own migrations.

`python -m shared.migrations revision SERVICE "message"` autogenerates a revision from the
service's tables; `python -m shared.migrations upgrade SERVICE [URL]` upgrades a store.
Services upgrade their own store at start-up (under an advisory lock on PostgreSQL, so
replicas starting together do not race).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import MetaData, Table, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

from shared.store import READ_ONLY, is_sqlite, make_engine

SERVICES = ("intake", "housing", "referrals", "notify")
# store -> (service that owns it, folder of its migrations); intake's key store is a database apart.
STORES = {**{s: (s, "migrations") for s in SERVICES}, "intake_keys": ("intake", "keys_migrations")}


def migrations_dir(store: str) -> Path:
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}")
    service, folder = STORES[store]
    return Path(importlib.import_module(f"services.{service}").__file__).parent / folder


def has_migrations(store: str) -> bool:
    return store in STORES and (migrations_dir(store) / "env.py").exists()


def alembic_config(service: str, connection=None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir(service)))
    config.attributes["connection"] = connection
    return config


def service_metadata(tables: list[Table]) -> MetaData:
    """A metadata holding only this service's tables (SQLModel keeps one for the whole process)."""
    metadata = MetaData()
    for table in tables:
        table.to_metadata(metadata)
    return metadata


def run_env(service: str, tables: list[Table]) -> None:
    """Body of every service's migrations/env.py."""
    from alembic import context

    metadata = service_metadata(tables)
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through shared.migrations (it passes a connection)")
    # A version table per service, so a shared database (tests, small installs) cannot confuse them.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True,
                      version_table=f"alembic_version_{service}")
    with context.begin_transaction():
        context.run_migrations()


_REVISION = re.compile(r"^revision\b[^=\n]*=\s*['\"]([^'\"]+)['\"]", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\b[^=\n]*=\s*(?:['\"]([^'\"]+)['\"]|None)\s*$", re.M)


def newest_revision(store: str) -> str | None:
    """The one head of a store's migrations, read from their files; None when alembic must say
    (a merge of branches, or a file this reading does not follow)."""
    revisions, parents = set(), set()
    for path in (migrations_dir(store) / "versions").glob("*.py"):
        source = path.read_text()
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        if down.group(1):
            parents.add(down.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def _revisions(engine: AsyncEngine, store: str) -> list[str]:
    """The revisions the store's version table names (none for a new store), read without alembic."""
    try:
        async with engine.connect() as conn:
            await conn.execution_options(**READ_ONLY)
            return list((await conn.execute(text(f"SELECT version_num FROM alembic_version_{store}"))).scalars().all())
    except DBAPIError:  # no version table: a new store
        return []


async def at_newest_revision(engine: AsyncEngine, store: str) -> bool:
    head = newest_revision(store)
    return head is not None and await _revisions(engine, store) == [head]


async def upgrade(engine: AsyncEngine, service: str, revision: str = "head") -> None:
    # A service restarted on a store already up to date does not load alembic, which it would hold
    # (about 6 MB) for the rest of its life.
    if revision == "head" and await at_newest_revision(engine, service):
        return

    def run(sync_conn) -> None:
        from alembic import command

        command.upgrade(alembic_config(service, sync_conn), revision)

    if not is_sqlite(str(engine.url)):
        async with engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"refuge-migrate-{service}"})
            await conn.run_sync(run)
        return
    # SQLite alters a table by copying it; foreign keys must be off (outside any transaction)
    # while the old table is dropped, and are checked again once the migration committed.
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.execute("PRAGMA foreign_keys=OFF")
        try:
            await conn.run_sync(run)
            await conn.commit()
            broken = await (await raw.execute("PRAGMA foreign_key_check")).fetchall()
            if broken:
                raise RuntimeError(f"{service}: migration left {len(broken)} rows with broken foreign keys")
        finally:
            await raw.execute("PRAGMA foreign_keys=ON")


async def current(engine: AsyncEngine, service: str) -> str | None:
    found = await _revisions(engine, service)
    if len(found) > 1:
        raise RuntimeError(f"{service}: the store is at several revisions: {', '.join(found)}")
    return found[0] if found else None


async def _revision(service: str, message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp}/scratch.db")
        await upgrade(engine, service)
        from alembic import command

        async with engine.begin() as conn:
            await conn.run_sync(lambda c: command.revision(alembic_config(service, c), message=message, autogenerate=True))
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description="migrations of the refuge services' stores")
    sub = parser.add_subparsers(dest="action", required=True)
    rev = sub.add_parser("revision", help="autogenerate a revision from the service's tables")
    rev.add_argument("service", choices=STORES)
    rev.add_argument("message")
    up = sub.add_parser("upgrade", help="upgrade a store to the newest revision")
    up.add_argument("service", choices=STORES)
    up.add_argument("url")
    args = parser.parse_args()
    if args.action == "revision":
        asyncio.run(_revision(args.service, args.message))
    else:
        async def run():
            engine = make_engine(args.url)
            await upgrade(engine, args.service)
            await engine.dispose()

        asyncio.run(run())


if __name__ == "__main__":
    main()
