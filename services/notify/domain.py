"""Notify's pure rules: who is addressed, what a partner may see, when a message goes out,
how long to wait before trying again, how a webhook is signed. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

LANGUAGES = ("fr", "nl", "en")


class Audience(StrEnum):
    social_coordinator = "social_coordinator"
    housing_staff = "housing_staff"
    event_partner = "event_partner"  # the partner named on the event: a referral's or a consent's partner
    subscribed_partners = "subscribed_partners"  # partners subscribed to this kind of event
    informed_partners = "informed_partners"  # partners that earlier received this person's data with consent


STAFF_AUDIENCES = frozenset({Audience.social_coordinator, Audience.housing_staff})


class ChannelChoice(StrEnum):
    email = "email"
    webhook = "webhook"
    all = "all"  # every channel the partner registered


class Timing(StrEnum):
    immediate = "immediate"
    quiet_hours = "quiet_hours"  # held during the configured quiet hours, sent when they end
    digest = "digest"  # collected into the next digest message


class Status(StrEnum):
    held = "held"  # waiting for its digest
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    digested = "digested"  # went out inside a digest message


# --- what a partner may see ----------------------------------------------------------

# Fields of an event that may go to a partner in any case: the referral and codes.
PARTNER_FIELDS = ("referral_ref", "service_category", "status", "previous_status", "reason_code", "place_kind")
# Fields about the person, sent only with the person's live consent for that partner (rule 8), or to a
# partner that already received them (to tell it to stop or erase). Stay, place and request references,
# decisions, tracks, needs and consent details never go to a partner.
CONSENTED_FIELDS = ("person_ref", "planned_end", "days_before")


def partner_view(fields: dict, *, disclose_person: bool) -> dict:
    allowed = PARTNER_FIELDS + (CONSENTED_FIELDS if disclose_person else ())
    return {key: fields[key] for key in allowed if key in fields and fields[key] is not None}


@dataclass(frozen=True)
class ConsentRecord:
    partner_ref: str
    purpose: str
    expires_on: date | None
    withdrawn: bool


def consent_allows(consents: list[ConsentRecord], *, partner_ref: str, purposes: set[str], today: date) -> bool:
    return any(
        c.partner_ref == partner_ref and c.purpose in purposes and not c.withdrawn
        and (c.expires_on is None or c.expires_on >= today)
        for c in consents
    )


# --- rules -------------------------------------------------------------------------------

def rule_matches(when: dict[str, list[str]] | None, fields: dict) -> bool:
    """`when` maps event fields to accepted values (codes); every listed field must match."""
    for key, accepted in (when or {}).items():
        value = fields.get(key)
        values = [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
        if not set(values) & set(accepted):
            return False
    return True


def channels_for(choice: str, *, email: bool, webhook: bool) -> list[str]:
    if choice == ChannelChoice.email:
        return ["email"]
    if choice == ChannelChoice.webhook:
        return ["webhook"]
    found = (["email"] if email else []) + (["webhook"] if webhook else [])
    # A partner nobody registered yet still gets a delivery row, which fails visibly so staff can act.
    return found or ["email"]


# --- when ----------------------------------------------------------------------------------

def parse_clock(value: str) -> time:
    try:
        hours, minutes = value.strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{value!r} is not a time like 07:30") from None


def parse_clock_window(value: str) -> tuple[time, time]:
    start, sep, end = value.partition("-")
    if not sep:
        raise ValueError(f"{value!r} is not a window like 21:00-07:00")
    return parse_clock(start), parse_clock(end)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_weekdays(value: str) -> frozenset[int]:
    days = [d.strip().lower()[:3] for d in value.split(",") if d.strip()]
    unknown = [d for d in days if d not in WEEKDAYS]
    if unknown or not days:
        raise ValueError(f"weekdays must be among {','.join(WEEKDAYS)}")
    return frozenset(WEEKDAYS.index(d) for d in days)


def quiet_hours_end(now: datetime, window: tuple[time, time] | None, tz: ZoneInfo) -> datetime | None:
    """When `now` falls in the quiet window, the moment it ends (UTC); else None."""
    if window is None:
        return None
    start, end = window
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    if start <= end:
        inside = start <= clock < end
        end_day = local.date()
    else:  # the window spans midnight
        inside = clock >= start or clock < end
        end_day = local.date() + timedelta(days=1) if clock >= start else local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)


def next_digest_at(now: datetime, at: time, weekdays: frozenset[int], tz: ZoneInfo) -> datetime:
    """The first digest moment strictly after `now` (UTC)."""
    local = now.astimezone(tz)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in weekdays:
            continue
        moment = datetime.combine(day, at, tzinfo=tz)
        if moment > local:
            return moment.astimezone(UTC)
    raise ValueError("no digest day configured")


# --- retries -------------------------------------------------------------------------------

def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter: between half and all of base * 2^(attempt-1), capped."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return ceiling * (rng or random).uniform(0.5, 1.0)


def retry_after_seconds(header: str | None, now: datetime) -> float | None:
    """A Retry-After header in seconds or as an HTTP date; None when absent or unreadable."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        moment = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def next_delay(attempt: int, *, base: float, cap: float, retry_after: float | None) -> float:
    delay = backoff_seconds(attempt, base, cap)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


def http_outcome(status: int) -> str:
    """'sent', 'temporary' or 'permanent' for a webhook's HTTP status."""
    if 200 <= status < 300:
        return "sent"
    if status in (408, 425, 429) or status >= 500:
        return "temporary"
    return "permanent"  # 3xx (redirects are not followed), 4xx: the partner must fix something


def smtp_outcome(code: int) -> str:
    return "permanent" if 500 <= code < 600 else "temporary"


# --- Standard Webhooks ------------------------------------------------------------------------

def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the base64 key after `whsec_`."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def valid_webhook_secret(secret: str) -> bool:
    if not secret.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) >= 24
    except ValueError:
        return False


def tombstone(erasure_ref: str) -> str:
    """What replaces an erased person's reference in the delivery log. One per erasure, and short
    enough for any reference column (32 characters)."""
    ref = f"ERASED-{erasure_ref}"
    return ref if len(ref) <= 32 else "ERASED-" + hashlib.sha256(erasure_ref.encode()).hexdigest()[:25]


def without_person(context: dict, person_ref: str, tombstone: str) -> dict:
    """A delivery's context with every mention of an erased person replaced by the tombstone."""
    return {key: tombstone if value == person_ref else value for key, value in (context or {}).items()}
