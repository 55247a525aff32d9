"""A local SMTP server that keeps every message it accepts, as .eml files and in memory.

`python -m shared.testing.smtp_sink --port 8025 --dir var/mail` runs it on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope as SmtpEnvelope


@dataclass
class Mailbox:
    directory: Path | None = None
    messages: list[EmailMessage] = field(default_factory=list)
    # Replies to give instead of accepting, consumed one per DATA command (e.g. "451 try later").
    scripted_replies: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, _server, _session, envelope: SmtpEnvelope) -> str:
        with self.lock:
            if self.scripted_replies:
                return self.scripted_replies.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
            count = len(self.messages)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{count:05d}.eml"
            (self.directory / name).write_bytes(envelope.content)
        return "250 Message accepted for delivery"

    def wait_for(self, predicate, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [m for m in self.messages if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        return []


class SmtpSink:
    def __init__(self, port: int, directory: Path | None = None, host: str = "127.0.0.1"):
        self.mailbox = Mailbox(directory=directory)
        self.controller = Controller(self.mailbox, hostname=host, port=port)
        self.host, self.port = host, port

    def start(self) -> SmtpSink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="local SMTP sink that keeps every mail")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    sink = SmtpSink(args.port, args.dir).start()
    try:
        asyncio.run(asyncio.Event().wait())
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
