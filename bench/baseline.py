"""What Redis and the store allow on this machine, with nothing of ours in between.

Plain redis-py produces the same events (XADD, pipelined) and consumes them (XREADGROUP COUNT
100, validation of the envelope, one INSERT transaction per batch into a table of the same kind
of store the services use, one XACK per batch). A second measure times single events through one
such hop, the yardstick of the end-to-end latencies.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import redis

from shared.events import Envelope
from shared.store import async_url

from .stats import latency_summary

BATCH = 100


class SqliteTable:
    def __init__(self, path: Path):
        # used from the thread the baseline runs in, one thread at a time
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        # the same settings as the services' SQLite stores (shared/store.py)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE event (event_id TEXT PRIMARY KEY, type TEXT NOT NULL, body TEXT NOT NULL)")

    def insert(self, rows: list[tuple[str, str, str]]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany("INSERT INTO event (event_id, type, body) VALUES (?, ?, ?)", rows)
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


class PostgresTable:
    def __init__(self, url: str):
        import psycopg2

        self.conn = psycopg2.connect(async_url(url).replace("postgresql+asyncpg://", "postgresql://"), connect_timeout=10)
        with self.conn.cursor() as cur:
            cur.execute("CREATE TABLE event (event_id TEXT PRIMARY KEY, type TEXT NOT NULL, body TEXT NOT NULL)")
        self.conn.commit()

    def insert(self, rows: list[tuple[str, str, str]]) -> None:
        from psycopg2.extras import execute_values

        with self.conn.cursor() as cur:
            execute_values(cur, "INSERT INTO event (event_id, type, body) VALUES %s", rows, page_size=len(rows))
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def run_baseline(redis_url: str, namespace: str, table, events: list[Envelope], hop_samples: int) -> dict:
    client = redis.Redis.from_url(redis_url, socket_timeout=10)
    stream, group = f"{namespace}.baseline.events", "baseline"
    bodies = [e.model_dump_json() for e in events]

    started = time.perf_counter()
    for start in range(0, len(bodies), BATCH):
        pipe = client.pipeline(transaction=False)
        for body in bodies[start:start + BATCH]:
            pipe.xadd(stream, {"body": body})
        pipe.execute()
    produce_s = time.perf_counter() - started

    client.xgroup_create(stream, group, id="0")
    consumed = 0
    started = time.perf_counter()
    while consumed < len(bodies):
        reply = client.xreadgroup(group, "baseline-1", {stream: ">"}, count=BATCH, block=1000)
        if not reply:
            raise RuntimeError("baseline consumer saw no entries")
        entries = reply[0][1]
        envelopes = [Envelope.model_validate_json(fields[b"body"]) for _id, fields in entries]
        table.insert([(e.event_id, e.type, orjson.dumps(e.payload).decode()) for e in envelopes])
        client.xack(stream, group, *[entry_id for entry_id, _ in entries])
        consumed += len(entries)
    consume_s = time.perf_counter() - started

    hop_stream = f"{namespace}.baseline.hops"
    client.xgroup_create(hop_stream, group, id="$", mkstream=True)
    hops = []
    for body in bodies[:hop_samples]:
        started = time.perf_counter()
        client.xadd(hop_stream, {"body": body.replace('"event_id":"', '"event_id":"hop-', 1)})
        [(_, [(entry_id, fields)])] = client.xreadgroup(group, "baseline-1", {hop_stream: ">"}, count=1, block=1000)
        envelope = Envelope.model_validate_json(fields[b"body"])
        table.insert([(envelope.event_id, envelope.type, orjson.dumps(envelope.payload).decode())])
        client.xack(hop_stream, group, entry_id)
        hops.append(time.perf_counter() - started)
    client.close()
    return {
        "events": len(bodies),
        "produce_per_s": len(bodies) / produce_s,
        "consume_per_s": len(bodies) / consume_s,
        "hop_latency": latency_summary(hops),
    }, hops
