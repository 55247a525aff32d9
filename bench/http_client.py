"""A minimal HTTP/1.1 keep-alive client for load generation.

httpx spends more CPU per request than a bare FastAPI endpoint does, so on a small machine it
would measure itself rather than the server. This client sends prepared bytes over kept-alive
connections and reads the status line, headers and a Content-Length body: all the services'
JSON answers are of that form.
"""

from __future__ import annotations

import asyncio
import time

import orjson

# uvicorn closes a kept-alive connection after 5 s without a request; reusing one that old could
# meet a connection the server is closing, and count as a failed request.
MAX_IDLE_SECONDS = 2.0


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=10)
        return cls(reader, writer)

    async def send(self, request: bytes, timeout: float = 60.0) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout=timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout=timeout) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


class Client:
    """POSTs one JSON body again and again to one URL, over a pool of kept-alive connections."""

    def __init__(self, host: str, port: int, path: str, body: dict, headers: dict[str, str] | None = None,
                 max_connections: int = 256):
        self.host, self.port = host, port
        # Past this many requests in flight, the next waits for a connection (as a browser would).
        self.slots = asyncio.Semaphore(max_connections)
        payload = orjson.dumps(body)
        lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
                 f"Content-Length: {len(payload)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
        self.idle: list[tuple[float, Connection]] = []  # (when it was last used, connection)

    async def _connection(self) -> Connection:
        while self.idle:
            used, connection = self.idle.pop()
            if time.monotonic() - used < MAX_IDLE_SECONDS:
                return connection
            connection.close()
        return await Connection.open(self.host, self.port)

    async def post(self) -> tuple[int, bytes]:
        async with self.slots:
            connection = await self._connection()
            try:
                status, body = await connection.send(self.request)
            except BaseException:
                connection.close()
                raise
            self.idle.append((time.monotonic(), connection))
            return status, body

    def close(self) -> None:
        for _, connection in self.idle:
            connection.close()
        self.idle.clear()
