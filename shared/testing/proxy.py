"""A TCP proxy on loopback that can cut and delay connections, for network faults in tests.

Services are pointed at the proxy's port instead of the server's. `cut(seconds)` aborts every
open connection and refuses new ones for that long; `delay(latency, seconds)` holds every chunk
for `latency` seconds during that time. Both end by themselves. The proxy runs its own event
loop in a thread, so it works the same from sync and async code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from shared.testing.redis_server import free_port


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    cuts: int = 0
    aborted: int = 0
    delays: int = 0
    bytes_forwarded: int = 0


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None and not writer.transport.is_closing():
                writer.transport.abort()


class TcpProxy:
    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", port: int | None = None,
                 connect_timeout: float = 3.0):
        self.upstream = (upstream_host, upstream_port)
        self.port = port or free_port()
        self.connect_timeout = connect_timeout
        self.stats = ProxyStats()
        self._links: set[_Link] = set()
        self._cut_until = 0.0  # time.monotonic() deadlines, so they are read the same from any thread
        self._delay_until = 0.0
        self._latency = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # --- life cycle ----------------------------------------------------------------

    def start(self) -> TcpProxy:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True))
            except BaseException as exc:  # the port is taken: report it to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"tcp-proxy-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop = None

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._abort_all()
        await asyncio.sleep(0)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- faults ----------------------------------------------------------------------

    def cut(self, seconds: float) -> None:
        """Abort every connection now and refuse new ones for `seconds`; then traffic flows again."""
        if seconds <= 0:
            raise ValueError("a cut lasts a positive number of seconds")
        self._cut_until = time.monotonic() + seconds
        self.stats.cuts += 1
        self._call(self._abort_all)

    def delay(self, latency: float, seconds: float) -> None:
        """Hold every chunk, both ways, `latency` seconds long, during the next `seconds`."""
        if seconds <= 0 or latency < 0:
            raise ValueError("a delay needs a latency >= 0 and a positive duration")
        self._latency = latency
        self._delay_until = time.monotonic() + seconds
        self.stats.delays += 1

    def heal(self) -> None:
        """End any cut or delay at once."""
        self._cut_until = 0.0
        self._delay_until = 0.0

    @property
    def is_cut(self) -> bool:
        return time.monotonic() < self._cut_until

    def _call(self, fn) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)

    def _abort_all(self) -> None:
        for link in list(self._links):
            link.abort()
            self.stats.aborted += 1

    # --- forwarding ------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            self.stats.refused += 1
            writer.transport.abort()
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), timeout=self.connect_timeout)
            except (OSError, TimeoutError):
                self.stats.refused += 1
                return
            link.upstream = up_writer
            if self.is_cut:  # cut while connecting upstream
                return
            self.stats.connections += 1
            link.tasks = [asyncio.create_task(self._pipe(reader, up_writer)),
                          asyncio.create_task(self._pipe(up_reader, writer))]
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in link.tasks:
                task.cancel()
            link.abort()
            self._links.discard(link)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                if self.is_cut:
                    return
                if time.monotonic() < self._delay_until and self._latency:
                    await asyncio.sleep(self._latency)
                writer.write(chunk)
                await writer.drain()
                self.stats.bytes_forwarded += len(chunk)
        except (OSError, asyncio.IncompleteReadError):
            return

