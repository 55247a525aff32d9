"""What the scenarios share: a redis-server of the benchmark's own, an SMTP sink that notes arrival
times, fresh stores (SQLite files, or PostgreSQL databases when a URL is given) and stacks of
services started as separate processes, exactly as `make run` starts them."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil

from shared.store import async_url
from shared.testing.redis_server import RedisServer, free_port
from shared.testing.stack import SERVICES, ServiceProcess, Stack

ROOT = Path(__file__).resolve().parents[1]


class MailClock:
    """The SMTP sink process (bench.mail_clock) and a reader of the arrival times it writes."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.path = workdir / "mail-arrivals.txt"
        self.log_path = workdir / "logs" / "mail-clock.log"
        self.process: subprocess.Popen | None = None
        self.arrivals: dict[str, float] = {}  # person_ref -> first arrival (time.monotonic())
        self.count = 0
        self._offset = 0

    def start(self, timeout: float = 15.0) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.mail_clock", "--port", str(self.port), "--out", str(self.path)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the mail clock exited; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"220"):
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("the mail clock did not answer")

    def poll(self) -> dict[str, float]:
        """Read the lines written since the last call; returns every arrival so far."""
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.decode().splitlines():
            at, ref = line.split(" ", 1)
            self.count += 1
            self.arrivals.setdefault(ref, float(at))
        return self.arrivals

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Lab:
    def __init__(self, workdir: Path, postgres_url: str | None = None):
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.redis = RedisServer(workdir / "redis", port=free_port())
        self.mail = MailClock(workdir)
        self.stacks: list[Stack] = []
        self.databases: list[str] = []
        self._labels = 0

    @property
    def store(self) -> str:
        return "postgresql" if self.postgres_url else "sqlite"

    def start(self) -> Lab:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        self.mail.start()
        return self

    async def stop(self) -> None:
        for stack in self.stacks:
            stack.stop()
        self.stacks.clear()
        self.mail.stop()
        self.redis.stop()
        for name in self.databases:
            try:
                await _drop_database(self.postgres_url, name)
            except Exception as exc:  # a leftover database is not worth hiding the figures for
                print(f"could not drop database {name}: {type(exc).__name__}", file=sys.stderr)
        self.databases.clear()

    async def new_stack(self, label: str, extra_env: dict[str, str] | None = None) -> Stack:
        """A stack with its own namespace on our Redis, its own stores, and the mail clock as SMTP."""
        self._labels += 1
        key = f"{self._labels:02d}-{label}"
        databases = {}
        if self.postgres_url:
            for service in SERVICES:
                databases[service] = await self.new_database(f"{label}_{service}")
        stack = Stack(workdir=self.workdir / key, redis_url=self.redis.url, namespace=f"bench{self._labels:02d}",
                      smtp_port=self.mail.port, database_urls=databases, extra_env=dict(extra_env or {}),
                      ports={name: free_port() for name in SERVICES})
        self.stacks.append(stack)
        return stack

    async def new_database(self, label: str) -> str:
        """A fresh PostgreSQL database, dropped when the lab stops."""
        name = f"bench_{label.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        url = await _create_database(self.postgres_url, name)
        self.databases.append(name)
        return url

    def stop_stack(self, stack: Stack) -> None:
        stack.stop()
        if stack in self.stacks:
            self.stacks.remove(stack)

    def remove_files(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


async def wait_healthy(procs: list[ServiceProcess], timeout: float = 60.0, every: float = 0.05) -> dict[str, float]:
    """Poll each process's /health until it answers 200; returns when each did (time.monotonic())."""
    healthy: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while len(healthy) < len(procs):
            if time.monotonic() > deadline:
                missing = [p.name for p in procs if p.name not in healthy]
                raise TimeoutError(f"not healthy after {timeout}s: {missing}")
            for proc in procs:
                if proc.name in healthy:
                    continue
                if proc.process is None or proc.process.poll() is not None:
                    raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
                try:
                    if (await http.get(f"{proc.url}/health")).status_code == 200:
                        healthy[proc.name] = time.monotonic()
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(every)
    return healthy


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def cpu_s(pid: int) -> float:
    """CPU time (user and system) the process has used so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


async def _create_database(admin_url: str, name: str) -> str:
    import asyncpg

    plain = async_url(admin_url).replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = plain.rpartition("/")[0]
    return f"{base}/{name}"


async def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    plain = async_url(admin_url).replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
