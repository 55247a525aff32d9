"""Backup and restore of one store and the namespace's Redis keys, on SQLite and PostgreSQL
(and from SQLite into PostgreSQL): rows, schema (partial unique index, foreign key, sequences),
streams with their groups and pending entries, and the outbox rows published after the Redis
snapshot marked for publishing again."""

import json
import socket
from datetime import UTC, date, datetime, timedelta

import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shared.events import dead_letter_stream, stream_name
from shared.messaging import MESSAGING_TABLES
from shared.ops import backup as backups
from shared.ops.common import OpsError
from shared.store import create_tables, make_engine
from tests.conftest import store_kinds

KINDS = store_kinds()
PAIRS = [(k, k) for k in KINDS] + ([("sqlite", "postgres")] if "postgres" in KINDS else [])

meta = sa.MetaData()
flat = sa.Table(
    "shelter_flat", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("code", sa.String(20), nullable=False, unique=True),
    sa.Column("address", sa.String(300), nullable=False),
)
stay = sa.Table(
    "shelter_stay", meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("stay_ref", sa.String(32), nullable=False, unique=True),
    sa.Column("flat_id", sa.ForeignKey("shelter_flat.id"), nullable=False),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ended_on", sa.Date),
    sa.Column("exit_safe", sa.Boolean),
    sa.Column("needs", sa.JSON),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("one_open_stay_per_flat", "flat_id", unique=True,
             sqlite_where=sa.text("ended_on IS NULL"), postgresql_where=sa.text("ended_on IS NULL")),
)
outbox = MESSAGING_TABLES[0]


async def fill_store(url: str) -> datetime:
    engine = make_engine(url)
    await create_tables(engine, MESSAGING_TABLES)
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(flat.insert(), [
            {"code": f"F{i}", "address": f"{i} Secret Street, Brussels"} for i in (1, 2, 3)])
        await conn.execute(stay.insert(), [
            {"stay_ref": "S-0001", "flat_id": 1, "starts_on": date(2026, 1, 5), "ended_on": date(2026, 3, 1),
             "exit_safe": True, "needs": ["legal", "social"], "recorded_at": now - timedelta(days=60)},
            {"stay_ref": "S-0002", "flat_id": 1, "starts_on": date(2026, 3, 2), "ended_on": None, "exit_safe": None,
             "needs": {"nested": [1, 2]}, "recorded_at": now - timedelta(days=1)},
            {"stay_ref": "S-0003", "flat_id": 2, "starts_on": date(2026, 3, 3), "ended_on": None, "exit_safe": None,
             "needs": None, "recorded_at": now},
        ])
        await conn.execute(outbox.insert(), [
            {"event_id": "e-old", "event_type": "PersonAdmitted", "stream": "x", "body": "{}",
             "created_at": now - timedelta(hours=1), "published_at": now - timedelta(hours=1)},
            {"event_id": "e-recent", "event_type": "PersonAdmitted", "stream": "x", "body": "{}",
             "created_at": now - timedelta(seconds=2), "published_at": now - timedelta(seconds=2)},
            {"event_id": "e-unpublished", "event_type": "PersonAdmitted", "stream": "x", "body": "{}",
             "created_at": now, "published_at": None},
        ])
    await engine.dispose()
    return now


async def fill_redis(url: str, namespace: str) -> None:
    client = aioredis.from_url(url)
    intake = stream_name(namespace, "intake")
    ids = [await client.xadd(intake, {"n": str(i)}) for i in range(3)]
    await client.xgroup_create(intake, "housing", id="0")
    await client.xreadgroup("housing", "housing-a", {intake: ">"}, count=2)
    await client.xack(intake, "housing", ids[0])
    await client.xadd(dead_letter_stream(namespace), {"reason": "test"})
    await client.set(f"{namespace}-unrelated", "not ours")
    await client.aclose()


async def rows(url: str, table: sa.Table) -> list[dict]:
    engine = make_engine(url)
    async with engine.connect() as conn:
        result = (await conn.execute(sa.select(table).order_by(table.c.id))).mappings().all()
    await engine.dispose()
    return [{k: _utc(v) for k, v in row.items()} for row in result]


def _utc(value):
    # SQLite hands back the UTC wall time without a zone, PostgreSQL an aware value.
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return value


@pytest.mark.parametrize(("source_kind", "target_kind"), PAIRS)
async def test_a_store_and_its_streams_come_back_whole_from_a_backup(
        source_kind, target_kind, make_database, redis_url, namespace, own_redis, tmp_path):
    source = make_database(source_kind, "source")
    await fill_store(source)
    await fill_redis(redis_url, namespace)

    report = await backups.backup(tmp_path / "backup", redis_url=redis_url, namespace=namespace,
                                  stores={"housing": source})
    assert report.rows["housing"] == {"inbox": 0, "outbox": 3, "shelter_flat": 3, "shelter_stay": 3}
    manifest = backups.read_manifest(tmp_path / "backup")
    assert set(manifest["redis"]["keys"]) == {stream_name(namespace, "intake"), dead_letter_stream(namespace)}
    assert all(len(t["sha256"]) == 64 for t in manifest["stores"]["housing"]["tables"].values())

    target = make_database(target_kind, "target")
    restored = await backups.restore(tmp_path / "backup", redis_url=own_redis.url, stores={"housing": target})
    assert restored.created_tables["housing"] == ["inbox", "outbox", "shelter_flat", "shelter_stay"]

    assert await rows(target, flat) == await rows(source, flat)
    assert await rows(target, stay) == await rows(source, stay)
    published = {r["event_id"]: r["published_at"] for r in await rows(target, outbox)}
    assert published["e-recent"] is None, "published after the Redis snapshot: must be published again"
    assert published["e-unpublished"] is None
    assert published["e-old"] == {r["event_id"]: r["published_at"] for r in await rows(source, outbox)}["e-old"]
    assert restored.republished == {"housing": 1}

    # The schema came along: foreign key target, partial unique index, id sequence.
    engine = make_engine(target)
    async with engine.begin() as conn:
        new_id = (await conn.execute(flat.insert().values(code="F4", address="x").returning(flat.c.id))).scalar_one()
        await conn.execute(stay.insert().values(stay_ref="S-0004", flat_id=1, starts_on=date(2026, 1, 1),
                                                ended_on=date(2026, 1, 2), recorded_at=datetime.now(UTC)))
    assert new_id == 4
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(stay.insert().values(stay_ref="S-0005", flat_id=1, starts_on=date(2026, 4, 1),
                                                    recorded_at=datetime.now(UTC)))
    await engine.dispose()

    # The streams came along with their groups and pending entries, and nothing outside the namespace.
    source_redis, target_redis = aioredis.from_url(redis_url), aioredis.from_url(own_redis.url)
    intake = stream_name(namespace, "intake")
    assert await target_redis.xrange(intake) == await source_redis.xrange(intake)
    assert await target_redis.xinfo_groups(intake) == await source_redis.xinfo_groups(intake)
    pending = await target_redis.xpending(intake, "housing")
    assert pending["pending"] == 1 and pending["consumers"] == [{"name": b"housing-a", "pending": 1}]
    assert await target_redis.xlen(dead_letter_stream(namespace)) == 1
    assert not await target_redis.exists(f"{namespace}-unrelated")

    # A second restore refuses to overwrite, and changes nothing; --force replaces.
    with pytest.raises(OpsError) as refused:
        await backups.restore(tmp_path / "backup", redis_url=own_redis.url, stores={"housing": target})
    assert "shelter_flat" in str(refused.value) and "not empty" in str(refused.value)
    assert "already holds 2 key(s)" in str(refused.value)
    assert len(await rows(target, flat)) == 4
    await target_redis.xadd(intake, {"n": "after"})
    await backups.restore(tmp_path / "backup", redis_url=own_redis.url, stores={"housing": target}, force=True)
    assert await rows(target, flat) == await rows(source, flat)
    assert await target_redis.xlen(intake) == 3
    await source_redis.aclose()
    await target_redis.aclose()


async def test_a_damaged_or_unfinished_backup_is_refused(make_database, redis_url, namespace, own_redis, tmp_path):
    source = make_database("sqlite", "source")
    await fill_store(source)
    directory = tmp_path / "backup"
    await backups.backup(directory, redis_url=redis_url, namespace=namespace, stores={"housing": source})

    with pytest.raises(OpsError, match="not empty: back up into a new directory"):
        await backups.backup(directory, redis_url=redis_url, namespace=namespace, stores={"housing": source})
    with pytest.raises(OpsError, match="does not exist"):
        await backups.backup(tmp_path / "other", redis_url=redis_url, namespace=namespace,
                             stores={"housing": f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"})

    stays = directory / "stores" / "housing" / "shelter_stay.jsonl"
    stays.write_bytes(stays.read_bytes().replace(b"S-0002", b"S-0009"))
    target = make_database("sqlite", "target")
    with pytest.raises(OpsError, match="does not match its sha256"):
        await backups.restore(directory, redis_url=own_redis.url, stores={"housing": target})
    (directory / "manifest.json").unlink()
    with pytest.raises(OpsError, match="not a finished backup"):
        await backups.restore(directory, redis_url=own_redis.url, stores={"housing": target})
    assert not (tmp_path / "target.db").exists()


async def _tables(url: str) -> list[str]:
    engine = make_engine(url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
    await engine.dispose()
    return names


async def test_a_restore_into_an_older_redis_or_from_an_unreachable_store_fails_clearly(
        make_database, redis_url, namespace, own_redis, tmp_path):
    source = make_database("sqlite", "source")
    await fill_store(source)
    await fill_redis(redis_url, namespace)
    directory = tmp_path / "backup"
    await backups.backup(directory, redis_url=redis_url, namespace=namespace, stores={"housing": source})

    # DUMP payloads load only into the same or a newer Redis: checked before anything is touched.
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["redis"]["server_version"] = "99.0.0"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    target = make_database("sqlite", "target")
    with pytest.raises(OpsError, match="older than the 99.0.0"):
        await backups.restore(directory, redis_url=own_redis.url, stores={"housing": target})
    assert await _tables(target) == []

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(OpsError, match="unreachable") as away:
        await backups.backup(tmp_path / "again", redis_url=redis_url, namespace=namespace, timeout=2,
                             stores={"housing": f"postgresql://refuge:secret@127.0.0.1:{port}/refuge"})
    assert away.value.exit_code == 3 and "secret" not in str(away.value)
