"""Notify's use cases: events become deliveries (in the event's unit of work); a sender delivers them."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import update
from sqlmodel import col, select

from shared.events import Envelope, new_ref
from shared.events.notify import NotificationDelivered, NotificationFailed
from shared.messaging import UnitOfWork, UnitOfWorkFactory

from .store import Delivery

log = structlog.get_logger("notify")

TEMPLATES = Path(__file__).parent / "templates"
LEASE = timedelta(minutes=2)

# event type -> template; staff alerts carry references and codes only.
STAFF_ALERTS = {"PersonAdmitted": "person_admitted", "PersonWaitlisted": "person_waitlisted"}


class PermanentFailure(Exception):
    pass


class Notify:
    def __init__(self, settings, uow: UnitOfWorkFactory, now=None):
        self.settings = settings
        self.uow = uow
        self.now = now or (lambda: datetime.now(UTC))
        self.templates = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined, autoescape=False)
        self._wake = asyncio.Event()

    # --- events -> deliveries -------------------------------------------------------

    async def on_staff_alert(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        recipient = str(self.settings.social_coordinator_email)
        exists = (await uow.session.exec(select(Delivery.id).where(
            Delivery.cause_event_id == envelope.event_id, Delivery.recipient == recipient))).first()
        if exists is not None:
            return
        uow.session.add(Delivery(
            notification_ref=new_ref("N"), cause_event_id=envelope.event_id, cause_event_type=envelope.type,
            recipient=recipient, recipient_kind="social_coordinator", template=STAFF_ALERTS[envelope.type],
            language=self.settings.staff_language, context=event.model_dump(mode="json"),
        ))
        log.info("delivery.planned", event_id=envelope.event_id, event_type=envelope.type)
        self._wake.set()

    def handlers(self) -> dict:
        return {name: self.on_staff_alert for name in STAFF_ALERTS}

    # --- sending --------------------------------------------------------------------

    def render(self, delivery: Delivery) -> EmailMessage:
        context = {**delivery.context, "console_url": self.settings.console_url}
        text = self.templates.get_template(f"{delivery.language}/{delivery.template}.txt").render(**context)
        subject_line, _, body = text.partition("\n")
        message = EmailMessage()
        message["From"] = str(self.settings.mail_from)
        message["To"] = delivery.recipient
        message["Subject"] = subject_line.removeprefix("Subject:").strip()
        # Stable across resends, so a receiver can recognise a message it already has.
        message["Message-ID"] = f"<{delivery.notification_ref}@refuge.notify>"
        message.set_content(body.lstrip("\n"))
        message["Content-Language"] = delivery.language
        return message

    async def run_sender(self) -> None:
        while True:
            try:
                sent = await self.send_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sender.failed", error=type(exc).__name__)
                sent = 0
            if not sent:
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.settings.sender_poll_seconds)
                except TimeoutError:
                    pass
                self._wake.clear()

    async def send_due(self, limit: int = 20) -> int:
        now = self.now()
        async with self.uow() as uow:
            due = (await uow.session.exec(
                select(Delivery).where(col(Delivery.status).in_(("pending", "sending")), col(Delivery.next_attempt_at) <= now)
                .order_by(col(Delivery.next_attempt_at)).limit(limit))).all()
            uow.session.expunge_all()
        handled = 0
        for delivery in due:
            if await self._claim(delivery, now):
                await self._deliver(delivery)
                handled += 1
        return handled

    async def _claim(self, delivery: Delivery, now: datetime) -> bool:
        async with self.uow() as uow:
            result = await uow.session.exec(
                update(Delivery).where(col(Delivery.id) == delivery.id, col(Delivery.status).in_(("pending", "sending")),
                                       col(Delivery.next_attempt_at) <= now)
                .values(status="sending", next_attempt_at=now + LEASE, attempts=Delivery.attempts + 1))
            await uow.commit()
            return result.rowcount == 1

    async def _deliver(self, delivery: Delivery) -> None:
        attempts = delivery.attempts + 1
        try:
            await self._send_email(self.render(delivery))
        except PermanentFailure as exc:
            await self._finish(delivery, attempts, ok=False, error=str(exc)[:300], reason="permanent")
        except Exception as exc:
            if attempts >= self.settings.max_attempts:
                await self._finish(delivery, attempts, ok=False, error=type(exc).__name__, reason="exhausted")
            else:
                await self._retry_later(delivery, attempts, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            await self._finish(delivery, attempts, ok=True)

    async def _send_email(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            await aiosmtplib.send(
                message, hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout,
                start_tls=s.smtp_starttls, use_tls=s.smtp_tls, username=s.smtp_username, password=s.smtp_password,
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"{exc.code} {exc.message}") from exc
            raise
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentFailure(f"recipient refused {codes}") from exc
            raise

    async def _retry_later(self, delivery: Delivery, attempts: int, error: str) -> None:
        delay = self.settings.retry_base_seconds * (2 ** (attempts - 1)) * random.uniform(0.5, 1.0)
        async with self.uow() as uow:
            await uow.session.exec(update(Delivery).where(col(Delivery.id) == delivery.id).values(
                status="pending", last_error=error[:300], next_attempt_at=self.now() + timedelta(seconds=delay)))
            await uow.commit()
        log.info("delivery.retry", notification_ref=delivery.notification_ref, attempts=attempts, delay=round(delay, 2))

    async def _finish(self, delivery: Delivery, attempts: int, *, ok: bool, error: str | None = None, reason: str = "") -> None:
        async with self.uow() as uow:
            await uow.session.exec(update(Delivery).where(col(Delivery.id) == delivery.id).values(
                status="sent" if ok else "failed", last_error=error, sent_at=self.now() if ok else None))
            common = dict(notification_ref=delivery.notification_ref, cause_event_id=delivery.cause_event_id,
                          channel=delivery.channel, recipient_kind=delivery.recipient_kind, attempts=attempts)
            uow.emit(NotificationDelivered(**common) if ok else NotificationFailed(**common, reason_code=reason),
                     correlation_id=None)
            await uow.commit()
        log.info("delivery.sent" if ok else "delivery.failed", notification_ref=delivery.notification_ref,
                 cause_event_id=delivery.cause_event_id, attempts=attempts)
