"""The outside world notify talks to: an SMTP relay, partners' webhook endpoints, and referrals'
API for a referral's signed partner link. Each call has a timeout; each failure is classified as
temporary (try again later) or permanent (a person must fix something)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from email.message import Message
from urllib.parse import quote

import aiosmtplib
import httpx

from shared.auth import TokenSigner

from .domain import http_outcome, retry_after_seconds, smtp_outcome, webhook_signature


class TemporaryFailure(Exception):
    def __init__(self, detail: str, retry_after: float | None = None):
        super().__init__(detail)
        self.detail = detail
        self.retry_after = retry_after


class PermanentFailure(Exception):
    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason


class EmailChannel:
    """Keeps SMTP connections open between messages, one per concurrent sender: a connection per
    message (TCP, EHLO, TLS, AUTH, QUIT) cost more than the message itself. A connection that failed
    in any way is closed, never reused, and one idle for `idle_seconds` is closed rather than tried."""

    def __init__(self, settings, *, idle_seconds: float = 30.0):
        self.settings = settings
        self.keep = settings.send_concurrency
        self.idle_seconds = idle_seconds
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []  # (connection, idle since)

    async def _connection(self) -> aiosmtplib.SMTP:
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < self.idle_seconds:
                return client
            await _close(client)
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host, port=s.smtp_port, timeout=s.smtp_timeout, use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls, validate_certs=s.smtp_validate_certs, cert_bundle=s.smtp_ca_file,
            username=s.smtp_username, password=s.smtp_password)
        await client.connect()
        return client

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client, _ in idle:
            await _close(client)

    async def send(self, message: Message) -> str:
        try:
            client = await self._connection()
            try:
                await client.send_message(message)
            except BaseException:
                await _close(client)
                raise
            if len(self._idle) < self.keep:
                self._idle.append((client, time.monotonic()))
            else:
                await _close(client)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = sorted({err.code for err in exc.recipients})
            if codes and all(smtp_outcome(c) == "permanent" for c in codes):
                raise PermanentFailure(f"smtp_{codes[0]}", f"smtp {codes} recipient refused") from None
            raise TemporaryFailure(f"smtp {codes} recipient refused") from None
        except aiosmtplib.SMTPResponseException as exc:  # 4xx/5xx replies, authentication refused
            if smtp_outcome(exc.code) == "permanent":
                raise PermanentFailure(f"smtp_{exc.code}", f"smtp {exc.code}") from None
            raise TemporaryFailure(f"smtp {exc.code}") from None
        except aiosmtplib.SMTPNotSupported:
            raise PermanentFailure("smtp_not_supported", "smtp relay lacks a required extension") from None
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            raise TemporaryFailure(type(exc).__name__) from None
        return "smtp 250"  # the relay accepted the DATA


async def _close(client: aiosmtplib.SMTP) -> None:
    """QUIT when the relay still listens (bounded by the client's timeout), else drop the socket."""
    try:
        if client.is_connected:
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError):
        pass
    finally:
        client.close()


class WebhookChannel:
    """Standard Webhooks: `webhook-id` (stable per message, the receiver's idempotency key),
    `webhook-timestamp` (this attempt), `webhook-signature` (HMAC-SHA256 over id.timestamp.body)."""

    def __init__(self, client: httpx.AsyncClient):
        self.client = client

    async def send(self, url: str, secret: str, msg_id: str, body: bytes, now: datetime) -> str:
        timestamp = int(now.timestamp())
        headers = {
            "content-type": "application/json",
            "user-agent": "refuge-notify/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": webhook_signature(secret, msg_id, timestamp, body),
        }
        try:
            response = await self.client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise TemporaryFailure(type(exc).__name__) from None
        outcome = http_outcome(response.status_code)
        if outcome == "temporary":
            raise TemporaryFailure(f"http {response.status_code}",
                                   retry_after=retry_after_seconds(response.headers.get("retry-after"), now))
        if outcome == "permanent":
            raise PermanentFailure(f"http_{response.status_code}", f"http {response.status_code}")
        return f"http {response.status_code}"


class ReferralLinks:
    """`GET {referrals_url}/api/referrals/{referral_ref}/partner-link` -> `{"url": "..."}`."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, signer: TokenSigner, timeout: float):
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.signer = signer
        self.timeout = timeout

    async def partner_link(self, referral_ref: str) -> str:
        token = self.signer.issue("service:notify", [])
        url = f"{self.base_url}/api/referrals/{quote(referral_ref, safe='')}/partner-link"
        try:
            response = await self.client.get(url, headers={"authorization": f"Bearer {token}"}, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise TemporaryFailure(f"referrals {type(exc).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise TemporaryFailure(f"referrals http {response.status_code}")
        if response.status_code != 200:
            raise PermanentFailure("referral_link_unavailable", f"referrals http {response.status_code}")
        try:
            link = response.json()["url"]
        except (ValueError, KeyError, TypeError):
            link = None
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise PermanentFailure("referral_link_unavailable", "referrals answered without a link")
        return link
