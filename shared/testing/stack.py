"""The four services as separate processes, as `make run` and the end-to-end tests start them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.testing.redis_server import free_port

SERVICES = ("intake", "housing", "referrals", "notify")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ServiceProcess:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "shared.serve", self.name], cwd=ROOT, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            try:
                response = httpx.get(f"{self.url}/health", timeout=2)
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not healthy after {timeout}s ({last}); see {self.log_path}")

    def signal(self, sig: int) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        if self.process:
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()



@dataclass
class Stack:
    workdir: Path
    redis_url: str
    namespace: str = "refuge"
    smtp_port: int = 8025
    database_urls: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def env_for(self, name: str, port: int, consumer: str | None = None) -> dict[str, str]:
        prefix = name.upper() + "_"
        env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(s.upper() + "_" for s in SERVICES))}
        db = self.database_urls.get(name, f"sqlite+aiosqlite:///{self.workdir / (name + '.db')}")
        env.update({
            prefix + "REDIS_URL": self.redis_url,
            prefix + "DATABASE_URL": db,
            prefix + "NAMESPACE": self.namespace,
            prefix + "PORT": str(port),
            "NOTIFY_SMTP_PORT": str(self.smtp_port),
            # Intake's per-person keys live in their own store, beside this stack's other stores.
            "INTAKE_KEYS_DATABASE_URL": self.database_urls.get(
                "intake_keys", f"sqlite+aiosqlite:///{self.workdir / 'intake-keys.db'}"),
            "INTAKE_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.ports.get('intake', 8001)}",
            "NOTIFY_CONSOLE_URL": f"http://127.0.0.1:{self.ports.get('intake', 8001)}",
            # The console calls the other services' APIs server-side, with the staff member's token.
            "INTAKE_HOUSING_URL": f"http://127.0.0.1:{self.ports.get('housing', 8002)}",
            "INTAKE_REFERRALS_URL": f"http://127.0.0.1:{self.ports.get('referrals', 8003)}",
            "INTAKE_NOTIFY_URL": f"http://127.0.0.1:{self.ports.get('notify', 8004)}",
            # Notify fetches each referral's signed partner link; partners open it on referrals.
            "NOTIFY_REFERRALS_URL": f"http://127.0.0.1:{self.ports.get('referrals', 8003)}",
            "REFERRALS_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.ports.get('referrals', 8003)}",
            "PYTHONUNBUFFERED": "1",
        })
        if consumer:
            env[prefix + "CONSUMER_NAME"] = consumer
        env.update(self.extra_env)
        return env

    def add(self, name: str, *, port: int | None = None, instance: str = "", consumer: str | None = None) -> ServiceProcess:
        port = port or self.ports.get(name) or free_port()
        self.ports.setdefault(name, port)
        key = name + instance
        proc = ServiceProcess(name, port, self.env_for(name, port, consumer), self.workdir / "logs" / f"{key}.log")
        self.services[key] = proc
        return proc

    def start(self, names=SERVICES, timeout: float = 30.0) -> Stack:
        for name in names:
            self.ports.setdefault(name, free_port())
        procs = [self.add(name) if name not in self.services else self.services[name] for name in names]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_healthy(timeout)
        return self

    def url(self, name: str) -> str:
        return self.services[name].url

    def stop(self) -> None:
        for proc in self.services.values():
            proc.signal(signal.SIGTERM)
        for proc in self.services.values():
            proc.stop()

    def logs(self) -> str:
        return "\n".join(p.log_path.read_text(errors="replace") for p in self.services.values() if p.log_path.exists())
