"""Back up Redis and every service's store together, and restore them.

Consistency rests on the order of the snapshots:

1. Redis first, in one MULTI (TIME, then DUMP and PTTL of every key of the namespace; a
   stream's DUMP carries its consumer groups and their pending entries). Its time is T.
2. Then each store, inside one REPEATABLE READ (PostgreSQL) or read (SQLite) transaction,
   every table reflected with SQLAlchemy and written as JSON lines, with its schema in the
   manifest.

A store therefore holds everything Redis holds and maybe more. On restore, outbox rows
published at or after T - 5 s (the margin covers clocks that differ between hosts) are marked
unpublished, so the relay publishes them again; events Redis already had arrive twice and the
consumers' inboxes drop the second copy. Events in Redis that a store had not consumed yet are
still unread or pending in the restored groups, so they are consumed after the restore.

Restore goes into empty stores (tables are created from the schema in the manifest when
missing, so a service does not need to have run first) and a Redis without keys of the
namespace; `force` empties the dumped tables and the namespace first.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import platform
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.events.streams import PRODUCERS, dead_letter_stream, stream_name
from shared.store import async_url, is_sqlite

from .common import EXIT_FAILED, EXIT_UNREACHABLE, OpsError, redacted, redis_call, redis_client, text

FORMAT = "refuge-backup/1"
MANIFEST = "manifest.json"
REDIS_FILE = "redis.jsonl"
REPUBLISH_MARGIN = timedelta(seconds=5)
BATCH = 1000


# --- progress -------------------------------------------------------------------------


class Progress(Protocol):
    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        """Begin a task; the returned function advances it."""


class NoProgress:
    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        return lambda _n: None


# --- reports --------------------------------------------------------------------------


@dataclass
class BackupReport:
    directory: Path
    redis_keys: int
    redis_time: datetime
    rows: dict[str, dict[str, int]]  # service -> table -> rows


@dataclass
class RestoreReport:
    redis_keys: int
    rows: dict[str, dict[str, int]]
    republished: dict[str, int]  # service -> outbox rows marked unpublished
    created_tables: dict[str, list[str]] = field(default_factory=dict)


# --- backup ---------------------------------------------------------------------------


async def backup(
    directory: Path,
    *,
    redis_url: str,
    namespace: str,
    stores: dict[str, str],
    timeout: float = 10.0,
    progress: Progress | None = None,
) -> BackupReport:
    progress = progress or NoProgress()
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        raise OpsError(f"{directory} is not empty: back up into a new directory")
    for service, url in stores.items():
        _require_existing_sqlite(service, url)
    engines = {service: _engine(url, timeout) for service, url in stores.items()}
    try:
        for service, engine in engines.items():  # fail before writing anything if a store is away
            await _ping(engine, service, stores[service], timeout)
        directory.mkdir(parents=True, exist_ok=True)

        redis_section = await _snapshot_redis(directory, redis_url, namespace, timeout, progress)
        redis_time = datetime.fromisoformat(redis_section["snapshot_time"])
        local_time = datetime.fromisoformat(redis_section["local_time"])
        republish_after = min(redis_time, local_time) - REPUBLISH_MARGIN

        store_sections = {}
        for service, engine in engines.items():
            store_sections[service] = await _dump_store(directory, service, stores[service], engine, progress)
    finally:
        for engine in engines.values():
            await engine.dispose()

    manifest = {
        "format": FORMAT,
        "created_at": _now().isoformat(),
        "namespace": namespace,
        "republish_after": republish_after.isoformat(),
        "versions": _versions(),
        "redis": redis_section,
        "stores": store_sections,
    }
    # The manifest is written last: a directory without one is an unfinished backup.
    (directory / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return BackupReport(
        directory=directory,
        redis_keys=len(redis_section["keys"]),
        redis_time=redis_time,
        rows={s: {t: info["rows"] for t, info in section["tables"].items()} for s, section in store_sections.items()},
    )


def _require_existing_sqlite(service: str, url: str) -> None:
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        raise OpsError(f"the store of {service} ({url}) does not exist: give its URL with --{service}-database-url")


def _sqlite_path(url: str) -> Path | None:
    if not is_sqlite(url):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(path) if path and path != ":memory:" else None


async def _snapshot_redis(directory: Path, url: str, namespace: str, timeout: float, progress: Progress) -> dict:
    client = redis_client(url, timeout)
    try:
        async def call(awaitable):
            return await redis_call(awaitable, url, timeout)

        version = str((await call(client.info("server"))).get("redis_version", "0"))
        pattern = _glob_escape(namespace) + ".*"
        found = set()
        cursor = 0
        while True:
            cursor, keys = await call(client.scan(cursor=cursor, match=pattern, count=1000))
            found.update(keys)
            if cursor == 0:
                break
        # Streams created between the SCAN and the MULTI are caught by name.
        found.update(k.encode() for k in [stream_name(namespace, p) for p in PRODUCERS] + [dead_letter_stream(namespace)])
        keys = sorted(found)

        local_time = _now()
        pipe = client.pipeline(transaction=True)
        pipe.time()
        for key in keys:
            pipe.type(key)
            pipe.pttl(key)
            pipe.dump(key)
        results = await call(pipe.execute())
    finally:
        await client.aclose()

    seconds, micros = results[0]
    snapshot_time = datetime.fromtimestamp(int(seconds) + int(micros) / 1e6, UTC)
    advance = progress.start("Redis", len(keys))
    digest = hashlib.sha256()
    described = {}
    with (directory / REDIS_FILE).open("wb") as out:
        for i, key in enumerate(keys):
            key_type, pttl, payload = results[1 + 3 * i: 4 + 3 * i]
            if payload is None:  # the key does not exist
                advance(1)
                continue
            line = orjson.dumps({
                "key": base64.b64encode(key).decode(), "name": text(key), "type": text(key_type),
                "pttl": int(pttl), "dump": base64.b64encode(payload).decode(),
            }) + b"\n"
            out.write(line)
            digest.update(line)
            described[text(key)] = text(key_type)
            advance(1)
    return {
        "url": redacted(url), "server_version": version, "snapshot_time": snapshot_time.isoformat(),
        "local_time": local_time.isoformat(), "file": REDIS_FILE, "sha256": digest.hexdigest(), "keys": described,
    }


async def _dump_store(directory: Path, service: str, url: str, engine: AsyncEngine, progress: Progress) -> dict:
    folder = directory / "stores" / service
    folder.mkdir(parents=True, exist_ok=True)
    snapshot_engine = engine if is_sqlite(url) else engine.execution_options(
        isolation_level="REPEATABLE READ", postgresql_readonly=True)
    started = _now()
    try:
        async with snapshot_engine.connect() as conn:
            async with conn.begin():
                server_version = await conn.run_sync(lambda c: ".".join(map(str, c.dialect.server_version_info or ())))
                schema, reflected = await conn.run_sync(_reflect_schema)
                counts = {}
                for name in schema["order"]:
                    counts[name] = (await conn.execute(sa.select(sa.func.count()).select_from(sa.table(name)))).scalar_one()
                tables = {}
                for name in schema["order"]:
                    advance = progress.start(f"{service}: {name}", counts[name])
                    tables[name] = await conn.run_sync(
                        lambda c, name=name, advance=advance: _dump_table(c, reflected.tables[name], folder, advance)
                    )
                    tables[name]["file"] = f"stores/{service}/{name}.jsonl"
                    tables[name]["schema"] = schema["tables"][name]
    except (OperationalError, DBAPIError, OSError) as exc:
        raise OpsError(f"backing up the store of {service} at {redacted(url)} failed ({type(exc).__name__})",
                       EXIT_UNREACHABLE) from exc
    return {
        "url": redacted(url), "dialect": engine.dialect.name, "server_version": server_version,
        "snapshot_started_at": started.isoformat(), "order": schema["order"], "tables": tables,
    }


def _dump_table(conn: Connection, table: sa.Table, folder: Path, advance: Callable[[int], None]) -> dict:
    # The reflected column types decode what the driver returns (JSON text, SQLite's date strings).
    columns = [str(c.name) for c in table.columns]
    order = list(table.primary_key.columns) or [table.c[columns[0]]]
    digest = hashlib.sha256()
    rows = 0
    result = conn.execution_options(yield_per=BATCH).execute(sa.select(table).order_by(*order))
    with (folder / f"{table.name}.jsonl").open("wb") as out:
        for partition in result.partitions():
            chunk = b"".join(
                orjson.dumps({c: _encode(v) for c, v in zip(columns, row, strict=True)}) + b"\n" for row in partition
            )
            out.write(chunk)
            digest.update(chunk)
            rows += len(partition)
            advance(len(partition))
    return {"rows": rows, "sha256": digest.hexdigest()}


def _encode(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value


# --- schema: reflected once, recreated on any dialect --------------------------------


def _reflect_schema(conn: Connection) -> tuple[dict, sa.MetaData]:
    meta = sa.MetaData()
    meta.reflect(conn)
    inspector = sa.inspect(conn)
    tables = {}
    for table in meta.sorted_tables:
        pk = inspector.get_pk_constraint(table.name).get("constrained_columns") or []
        tables[str(table.name)] = {
            "columns": [
                {"name": str(c.name), "type": _type_spec(c.type), "nullable": bool(c.nullable),
                 "primary_key": c.name in pk}
                for c in table.columns
            ],
            "primary_key": pk,
            "foreign_keys": [
                {"name": fk.get("name"), "columns": fk["constrained_columns"], "referred_table": fk["referred_table"],
                 "referred_columns": fk["referred_columns"],
                 "options": {k: v for k, v in (fk.get("options") or {}).items() if k in ("ondelete", "onupdate")}}
                for fk in inspector.get_foreign_keys(table.name)
            ],
            "unique": [
                {"name": u.get("name"), "columns": u["column_names"]} for u in inspector.get_unique_constraints(table.name)
            ],
            "indexes": [_index_spec(ix) for ix in inspector.get_indexes(table.name) if not ix.get("duplicates_constraint")],
        }
    # Reflection hands back str subclasses (quoted_name); JSON wants plain strings.
    spec = json.loads(json.dumps({"order": [str(t.name) for t in meta.sorted_tables], "tables": tables}))
    return spec, meta


def _index_spec(ix: dict) -> dict:
    where = None
    for key, value in (ix.get("dialect_options") or {}).items():
        if key.endswith("_where") and value is not None:
            where = str(value.text if hasattr(value, "text") else value)
    spec = {"name": ix["name"], "columns": ix["column_names"], "unique": bool(ix["unique"]), "where": where}
    if any(c is None for c in ix["column_names"]):
        spec["expressions"] = ix.get("expressions")
    return spec


def _type_spec(col_type: sa.types.TypeEngine) -> dict:
    if isinstance(col_type, sa.JSON):
        return {"type": "JSON"}
    try:
        generic = col_type.as_generic()
    except NotImplementedError:
        return {"type": "Text"}
    spec: dict[str, Any] = {"type": type(generic).__name__}
    for attr in ("length", "timezone", "precision", "scale"):
        value = getattr(generic, attr, None)
        if value is not None and not (attr == "timezone" and value is False):
            spec[attr] = value
    return spec


_TYPES: dict[str, Callable[[dict], sa.types.TypeEngine]] = {
    "Integer": lambda s: sa.Integer(),
    "BigInteger": lambda s: sa.BigInteger(),
    "SmallInteger": lambda s: sa.SmallInteger(),
    "String": lambda s: sa.String(s.get("length")),
    "Unicode": lambda s: sa.String(s.get("length")),
    "Text": lambda s: sa.Text(),
    "UnicodeText": lambda s: sa.Text(),
    "Boolean": lambda s: sa.Boolean(),
    "Date": lambda s: sa.Date(),
    "DateTime": lambda s: sa.DateTime(timezone=bool(s.get("timezone"))),
    "Time": lambda s: sa.Time(),
    "Float": lambda s: sa.Float(),
    "Double": lambda s: sa.Double(),
    "Numeric": lambda s: sa.Numeric(s.get("precision"), s.get("scale")),
    "LargeBinary": lambda s: sa.LargeBinary(),
    "Interval": lambda s: sa.Interval(),
    "Uuid": lambda s: sa.Uuid(),
    "JSON": lambda s: sa.JSON(),
    "Enum": lambda s: sa.String(s.get("length")),
}


def _build_metadata(section: dict) -> sa.MetaData:
    meta = sa.MetaData()
    from_sqlite = section["dialect"] == "sqlite"
    for name in section["order"]:
        spec = section["tables"][name]["schema"]
        columns = []
        for c in spec["columns"]:
            type_spec = dict(c["type"])
            if from_sqlite and type_spec["type"] == "DateTime":
                # SQLite keeps no time zone; the services' models store UTC in zone-aware columns.
                type_spec["timezone"] = True
            make = _TYPES.get(type_spec["type"], lambda s: sa.Text())
            columns.append(sa.Column(c["name"], make(type_spec), nullable=c["nullable"], primary_key=c["primary_key"]))
        constraints = [
            sa.ForeignKeyConstraint(fk["columns"], [f"{fk['referred_table']}.{col}" for col in fk["referred_columns"]],
                                    name=fk["name"], **fk["options"])
            for fk in spec["foreign_keys"]
        ] + [sa.UniqueConstraint(*u["columns"], name=u["name"]) for u in spec["unique"]]
        table = sa.Table(name, meta, *columns, *constraints)
        for ix in spec["indexes"]:
            parts = [sa.text(e) for e in ix["expressions"]] if ix.get("expressions") else [table.c[c] for c in ix["columns"]]
            where = {"sqlite_where": sa.text(ix["where"]), "postgresql_where": sa.text(ix["where"])} if ix["where"] else {}
            sa.Index(ix["name"], *parts, unique=ix["unique"], **where)
    return meta


# --- restore --------------------------------------------------------------------------


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.exists():
        raise OpsError(f"{directory} holds no {MANIFEST}: not a finished backup")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise OpsError(f"{path} is not a {FORMAT} manifest (format {manifest.get('format')!r})")
    return manifest


def verify(directory: Path, manifest: dict) -> None:
    files = [(manifest["redis"]["file"], manifest["redis"]["sha256"])] + [
        (info["file"], info["sha256"]) for section in manifest["stores"].values() for info in section["tables"].values()
    ]
    for name, expected in files:
        path = Path(directory) / name
        if not path.exists():
            raise OpsError(f"{path} is missing from the backup")
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise OpsError(f"{path} does not match its sha256 in the manifest: the backup is damaged")


async def restore(
    directory: Path,
    *,
    redis_url: str,
    stores: dict[str, str],
    force: bool = False,
    timeout: float = 10.0,
    progress: Progress | None = None,
) -> RestoreReport:
    progress = progress or NoProgress()
    directory = Path(directory)
    manifest = read_manifest(directory)
    verify(directory, manifest)
    missing = sorted(set(manifest["stores"]) - set(stores))
    if missing:
        raise OpsError(f"no target store given for {', '.join(missing)}")

    engines = {service: _engine(stores[service], timeout) for service in manifest["stores"]}
    try:
        # Check every target before changing any, so a refusal leaves everything as it was.
        problems = []
        for service, engine in engines.items():
            await _ping(engine, service, stores[service], timeout)
            problems += await _check_store(engine, service, stores[service], manifest["stores"][service], force)
        problems += await _check_redis(redis_url, manifest, force, timeout)
        if problems:
            raise OpsError("nothing restored:\n  " + "\n  ".join(problems))

        redis_keys = await _restore_redis(directory, redis_url, manifest, force, timeout, progress)
        republish_after = datetime.fromisoformat(manifest["republish_after"])
        report = RestoreReport(redis_keys=redis_keys, rows={}, republished={})
        for service, engine in engines.items():
            rows, created, republished = await _restore_store(
                directory, service, stores[service], engine, manifest["stores"][service], republish_after, force, progress)
            report.rows[service] = rows
            report.created_tables[service] = created
            report.republished[service] = republished
        return report
    finally:
        for engine in engines.values():
            await engine.dispose()


async def _check_store(engine: AsyncEngine, service: str, url: str, section: dict, force: bool) -> list[str]:
    def check(conn: Connection) -> list[str]:
        inspector = sa.inspect(conn)
        existing = set(inspector.get_table_names())
        problems = []
        for name in section["order"]:
            if name not in existing:
                continue
            target_columns = {c["name"] for c in inspector.get_columns(name)}
            lost = [c["name"] for c in section["tables"][name]["schema"]["columns"] if c["name"] not in target_columns]
            if lost:
                problems.append(f"{service}: table {name} has no column {', '.join(lost)}: the target is another schema")
            if not force and conn.execute(sa.select(sa.func.count()).select_from(sa.table(name))).scalar_one():
                problems.append(f"{service}: table {name} at {redacted(url)} is not empty (use --force to replace it)")
        return problems

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(check)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise OpsError(f"the store of {service} at {redacted(url)} is unreachable ({type(exc).__name__})",
                       EXIT_UNREACHABLE) from exc


async def _check_redis(url: str, manifest: dict, force: bool, timeout: float) -> list[str]:
    client = redis_client(url, timeout)
    try:
        version = str((await redis_call(client.info("server"), url, timeout)).get("redis_version", "0"))
        existing = await _namespace_keys(client, url, manifest["namespace"], timeout)
    finally:
        await client.aclose()
    problems = []
    source = manifest["redis"]["server_version"]
    if _version(version)[:2] < _version(source)[:2]:
        problems.append(f"Redis at {redacted(url)} is {version}, older than the {source} the backup was taken from: "
                        "DUMP payloads only load into the same or a newer Redis")
    if existing and not force:
        problems.append(f"Redis at {redacted(url)} already holds {len(existing)} key(s) of namespace "
                        f"{manifest['namespace']!r} (use --force to replace them)")
    return problems


async def _namespace_keys(client, url: str, namespace: str, timeout: float) -> list[bytes]:
    found = []
    cursor = 0
    while True:
        cursor, keys = await redis_call(client.scan(cursor=cursor, match=_glob_escape(namespace) + ".*", count=1000),
                                        url, timeout)
        found += keys
        if cursor == 0:
            return found


async def _restore_redis(directory: Path, url: str, manifest: dict, force: bool, timeout: float,
                         progress: Progress) -> int:
    lines = (Path(directory) / manifest["redis"]["file"]).read_bytes().splitlines()
    advance = progress.start("Redis", len(lines))
    client = redis_client(url, timeout)
    try:
        pipe = client.pipeline(transaction=True)
        if force:
            for key in await _namespace_keys(client, url, manifest["namespace"], timeout):
                pipe.delete(key)
        for line in lines:
            item = orjson.loads(line)
            pipe.restore(base64.b64decode(item["key"]), max(int(item["pttl"]), 0), base64.b64decode(item["dump"]),
                         replace=True)
        try:
            await redis_call(pipe.execute(), url, timeout)
        except OpsError:
            raise
        except Exception as exc:
            raise OpsError(f"Redis at {redacted(url)} refused the restore: {exc}") from exc
        advance(len(lines))
        return len(lines)
    finally:
        await client.aclose()


async def _restore_store(directory: Path, service: str, url: str, engine: AsyncEngine, section: dict,
                         republish_after: datetime, force: bool, progress: Progress) -> tuple[dict, list, int]:
    source_meta = _build_metadata(section)
    advances = {name: progress.start(f"{service}: {name}", section["tables"][name]["rows"]) for name in section["order"]}

    def load(conn: Connection) -> tuple[dict, list, int]:
        existing = set(sa.inspect(conn).get_table_names())
        missing = [source_meta.tables[n] for n in section["order"] if n not in existing]
        source_meta.create_all(conn, tables=missing)
        target = sa.MetaData()
        target.reflect(conn, only=section["order"])
        if force:
            for name in reversed(section["order"]):
                conn.execute(target.tables[name].delete())
        rows = {}
        for name in section["order"]:
            info = section["tables"][name]
            rows[name] = _load_table(conn, directory / info["file"], target.tables[name], info["schema"], advances[name])
            if rows[name] != info["rows"]:
                raise OpsError(f"{info['file']} holds {rows[name]} rows, the manifest says {info['rows']}")
        if conn.dialect.name == "postgresql":
            for name in section["order"]:
                _reset_sequence(conn, target.tables[name])
        republished = 0
        if "outbox" in target.tables and "published_at" in target.tables["outbox"].c:
            outbox = target.tables["outbox"]
            cutoff = _for_column(republish_after, outbox.c.published_at.type)
            republished = conn.execute(
                outbox.update().where(outbox.c.published_at >= cutoff).values(published_at=None)
            ).rowcount
        return rows, [t.name for t in missing], republished

    try:
        async with engine.begin() as conn:
            return await conn.run_sync(load)
    except (OperationalError, DBAPIError, OSError) as exc:
        raise OpsError(f"restoring the store of {service} at {redacted(url)} failed ({type(exc).__name__}); "
                       "its transaction was rolled back", EXIT_FAILED) from exc


def _load_table(conn: Connection, path: Path, table: sa.Table, spec: dict, advance: Callable[[int], None]) -> int:
    decoders = {c["name"]: _decoder(c["type"], table.c[c["name"]].type) for c in spec["columns"]}
    count = 0
    for batch in _batches(path):
        rows = [{k: decoders[k](v) if v is not None else None for k, v in orjson.loads(line).items()} for line in batch]
        conn.execute(table.insert(), rows)
        count += len(rows)
        advance(len(rows))
    return count


def _batches(path: Path) -> Iterator[list[bytes]]:
    batch = []
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                batch.append(line)
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _decoder(type_spec: dict, target_type: sa.types.TypeEngine) -> Callable[[Any], Any]:
    kind = type_spec["type"]
    if kind == "DateTime":
        return lambda v: _for_column(datetime.fromisoformat(v), target_type)
    if kind == "Date":
        return date.fromisoformat
    if kind == "Time":
        return time.fromisoformat
    if kind == "LargeBinary":
        return base64.b64decode
    if kind == "Numeric":
        return lambda v: Decimal(str(v))
    if kind == "Uuid":
        return UUID
    if kind == "Interval":
        return lambda v: timedelta(seconds=v)
    return lambda v: v


def _for_column(value: datetime, column_type: sa.types.TypeEngine) -> datetime:
    """Stores keep UTC: a zone-aware column gets an aware value, a naive one the UTC wall time."""
    aware = value if value.tzinfo else value.replace(tzinfo=UTC)
    if getattr(column_type, "timezone", False):
        return aware
    return aware.astimezone(UTC).replace(tzinfo=None)


def _reset_sequence(conn: Connection, table: sa.Table) -> None:
    pk = list(table.primary_key.columns)
    if len(pk) != 1 or not isinstance(pk[0].type, sa.Integer):
        return
    name, column = table.name, pk[0].name
    conn.execute(
        sa.text(
            f'SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX("{column}"), 1), '
            f'MAX("{column}") IS NOT NULL) FROM "{name}"'
        ),
        {"table": f'"{name}"', "column": column},
    )


# --- helpers --------------------------------------------------------------------------


def _engine(url: str, timeout: float) -> AsyncEngine:
    url = async_url(url)
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=1, max_overflow=0, connect_args={"timeout": timeout})
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": timeout})

    @event.listens_for(engine.sync_engine, "connect")
    def _autocommit_driver(dbapi_conn, _record):
        # SQLAlchemy's BEGIN below then opens the transaction, so every read shares one snapshot.
        dbapi_conn.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN")

    return engine


async def _ping(engine: AsyncEngine, service: str, url: str, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    except (TimeoutError, OperationalError, DBAPIError, OSError) as exc:
        raise OpsError(f"the store of {service} at {redacted(url)} is unreachable ({type(exc).__name__})",
                       EXIT_UNREACHABLE) from exc


def _glob_escape(value: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in value)


def _version(value: str) -> tuple[int, ...]:
    parts = []
    for part in value.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _now() -> datetime:
    return datetime.now(UTC)


def _versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            return "unknown"

    return {"refuge": version("refuge"), "sqlalchemy": sa.__version__, "redis-py": version("redis"),
            "python": platform.python_version()}
