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
import warnings
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
    # For each accepted message: was the session encrypted, who authenticated (None: nobody), and
    # the client's address and port (one per connection).
    transports: list[dict] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope: SmtpEnvelope) -> str:
        with self.lock:
            if self.scripted_replies:
                return self.scripted_replies.pop(0)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        login = getattr(session, "auth_data", None)
        with self.lock:
            self.messages.append(message)
            transport = getattr(server, "transport", None)
            encrypted = transport is not None and transport.get_extra_info("ssl_object") is not None
            self.transports.append({"tls": encrypted or getattr(session, "ssl", None) is not None,
                                    "user": login.login.decode() if getattr(login, "login", None) else None,
                                    "peer": tuple(session.peer) if session.peer else None})
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


def password_check(users: dict[str, str]):
    """An aiosmtpd authenticator accepting exactly these user/password pairs (LOGIN and PLAIN)."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(_server, _session, _envelope, _mechanism, auth_data):
        if isinstance(auth_data, LoginPassword) and users.get(auth_data.login.decode()) == auth_data.password.decode():
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)

    return check


class SmtpSink:
    """`tls_context` offers STARTTLS (with `require_starttls=True` to insist); `ssl_context` makes
    the whole connection TLS; `users` requires SMTP authentication with these passwords."""

    def __init__(self, port: int, directory: Path | None = None, host: str = "127.0.0.1", *,
                 tls_context=None, require_starttls: bool = False, ssl_context=None, users: dict[str, str] | None = None):
        self.mailbox = Mailbox(directory=directory)
        options: dict = {}
        if tls_context is not None:
            options.update(tls_context=tls_context, require_starttls=require_starttls)
        if users:
            # aiosmtpd only counts STARTTLS as TLS for AUTH; a TLS-from-the-start session is encrypted anyway.
            options.update(authenticator=password_check(users), auth_required=True,
                           auth_require_tls=tls_context is not None)
        if ssl_context is not None:
            options.update(ssl_context=ssl_context, server_hostname=host)
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
        self.controller = Controller(self.mailbox, hostname=host, port=port, **options)
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
