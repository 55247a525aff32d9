"""Structured JSON logs. Callers pass references and codes only, never personal data."""

import asyncio
import atexit
import logging
import sys
import threading

import orjson
import structlog


def configure_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO))
    for noisy in ("uvicorn.access", "faststream", "faststream.access", "faststream.access.redis"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A traceback's local variables could hold a case file: frames only, never their locals.
            structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False)),
            # orjson straight to bytes: the standard json module and print cost a tenth of handling an event.
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=_lines_to(sys.stdout.buffer),
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


class LinesPerTurn:
    """JSON lines to a binary file. Lines logged on the event loop go out together, in one write at
    the end of the loop's turn: a write and flush per line cost about a tenth of handling an event.
    Lines logged with no running loop (start-up, another thread) are written at once, and lines
    still waiting at exit are written then."""

    MAX_WAITING = 1000

    def __init__(self, file):
        self._file = file
        self._lock = threading.Lock()
        self._waiting: list[bytes] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write([message])
            return
        self._waiting.append(message)
        if len(self._waiting) >= self.MAX_WAITING:
            self.flush()
        elif self._flush_on is not loop:  # a loop closed before its flush came does not hold lines back
            loop.call_soon(self.flush)
            self._flush_on = loop

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg

    def flush(self) -> None:
        self._flush_on = None
        lines, self._waiting = self._waiting, []
        if lines:
            self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        with self._lock:
            self._file.write(b"\n".join(lines) + b"\n")
            self._file.flush()


_LOGGERS: dict[int, LinesPerTurn] = {}


def _lines_to(file):
    """One logger per file, whatever the module asking: the lines of a turn share one write."""
    logger = _LOGGERS.get(id(file))
    if logger is None:
        logger = _LOGGERS[id(file)] = LinesPerTurn(file)
    return lambda *_args: logger
