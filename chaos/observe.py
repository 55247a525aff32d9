"""What the system holds once it drained: every service's store, the mailbox and the streams.

Each store row and each distinct mail becomes one effect (see chaos/workload.py), counted as
many times as it occurs, so that a duplicate shows as a count of two.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from dataclasses import dataclass, field

import httpx
import redis.asyncio as aioredis
from sqlmodel import col, select

from services.housing.store import Stay, StayExtension, WaitlistEntry
from services.intake.store import AssessmentRecord, HelpRequest, TimelineEntry
from services.intake.store import Consent as IntakeConsent
from services.notify.store import Consent as NotifyConsent
from services.notify.store import Delivery
from services.referrals.store import Consent as ReferralsConsent
from services.referrals.store import FollowedPerson, Referral
from shared.events import PRODUCERS, SUBSCRIPTIONS, dead_letter_stream, stream_name
from shared.store import make_engine, session_factory

PLACEMENT_EVENTS = ("PersonAdmitted", "PersonWaitlisted")
MESSAGE_ID = re.compile(r"<([^@>]+)@")


def family_of(event_type: str) -> str:
    return "placement" if event_type in PLACEMENT_EVENTS else event_type


@dataclass
class Observation:
    effects: Counter = field(default_factory=Counter)
    recorded: dict[str, dict] = field(default_factory=dict)  # marker -> refs: what stores hold of each operation
    repeated_causes: Counter = field(default_factory=Counter)  # "where" -> rows recording a cause already recorded
    mails_received: int = 0  # messages the SMTP sink accepted, resends included
    mail_resends: int = 0  # copies of a Message-ID already received (a resend, not a duplicate)
    deliveries_not_sent: int = 0  # e-mail deliveries that ended failed
    mails_missing: int = 0  # e-mail deliveries marked sent that never reached the mailbox
    dead_letters: list[dict] = field(default_factory=list)
    pending: dict[str, int] = field(default_factory=dict)  # "group@stream" -> pending + lag
    _deliveries: dict[str, tuple] = field(default_factory=dict)  # notification_ref -> (person, family, audience)


async def _rows(url: str, query):
    engine = make_engine(url)
    try:
        async with session_factory(engine)() as session:
            return (await session.exec(query)).all()
    finally:
        await engine.dispose()


async def observe_stores(urls: dict[str, str], obs: Observation) -> None:
    e = obs.effects
    # Names are sealed in intake's store; each request carries its operation's marker as the
    # name of the staff member who recorded it.
    requests = await _rows(urls["intake"], select(HelpRequest.recorded_by, HelpRequest.person_ref,
                                                  HelpRequest.request_ref))
    assessments = await _rows(urls["intake"], select(AssessmentRecord.request_ref, AssessmentRecord.decision,
                                                     AssessmentRecord.place_kind, AssessmentRecord.track))
    assessment_of = {r: (d, k, t) for r, d, k, t in assessments}
    for marker, person, request_ref in requests:
        e[("intake", "request", marker)] += 1
        decision, kind, track = assessment_of.get(request_ref, (None, None, None))
        obs.recorded[marker] = {"person_ref": person, "request_ref": request_ref, "decision": decision,
                                "place_kind": kind, "track": track}
    seen: set[str] = set()
    for person, event_type, event_id in await _rows(
            urls["intake"], select(TimelineEntry.person_ref, TimelineEntry.event_type, TimelineEntry.event_id)):
        e[("intake", "timeline", person, family_of(event_type))] += 1
        if event_id in seen:
            obs.repeated_causes["intake.timeline"] += 1
        seen.add(event_id)

    stays = await _rows(urls["housing"], select(Stay.id, Stay.stay_ref, Stay.person_ref, Stay.follow_up))
    stay_by_id = {sid: (ref, person) for sid, ref, person, _f in stays}
    for _sid, ref, person, follow_up in stays:
        e[("housing", "placement", person)] += 1
        if follow_up:  # discharged: the workload writes its marker in the follow-up plan
            e[("housing", "discharge", follow_up)] += 1
            obs.recorded[follow_up] = {"stay_ref": ref, "person_ref": person}
    for stay_id, reason in await _rows(urls["housing"], select(StayExtension.stay_id, StayExtension.reason)):
        e[("housing", "extension", reason)] += 1
        ref, person = stay_by_id.get(stay_id, ("?", "?"))
        obs.recorded[reason] = {"stay_ref": ref, "person_ref": person}
    for person in await _rows(urls["housing"], select(WaitlistEntry.person_ref)):
        e[("housing", "placement", person)] += 1

    # Consents: intake's row names the staff member (the operation's marker) who gave or withdrew it.
    for ref, person, given_by, withdrawn_by in await _rows(urls["intake"], select(
            IntakeConsent.consent_ref, IntakeConsent.person_ref, IntakeConsent.given_by, IntakeConsent.withdrawn_by)):
        e[("intake", "consent", given_by)] += 1
        obs.recorded[given_by] = {"consent_ref": ref, "person_ref": person}
        if withdrawn_by:
            e[("intake", "withdrawal", withdrawn_by)] += 1
            obs.recorded[withdrawn_by] = {"consent_ref": ref, "person_ref": person}
    for ref, withdrawn_at in await _rows(urls["referrals"], select(ReferralsConsent.consent_ref,
                                                                   ReferralsConsent.withdrawn_at)):
        e[("referrals", "consent", ref)] += 1
        if withdrawn_at is not None:
            e[("referrals", "withdrawn", ref)] += 1
    for ref, withdrawn in await _rows(urls["notify"], select(NotifyConsent.consent_ref, NotifyConsent.withdrawn)):
        e[("notify", "consent", ref)] += 1
        if withdrawn:
            e[("notify", "withdrawn", ref)] += 1

    for person in await _rows(urls["referrals"], select(FollowedPerson.person_ref)):
        e[("referrals", "followed", person)] += 1
    for person, category in await _rows(urls["referrals"], select(Referral.person_ref, Referral.category)):
        e[("referrals", "referral", person, category)] += 1

    causes: set[tuple] = set()
    for ref, person, cause_type, cause_id, audience, recipient, channel, status in await _rows(urls["notify"], select(
            Delivery.notification_ref, Delivery.person_ref, Delivery.cause_event_type, Delivery.cause_event_id,
            Delivery.audience, Delivery.recipient, Delivery.channel, Delivery.status)):
        key = (person or "-", family_of(cause_type), audience)
        e[("notify", "delivery", *key)] += 1
        if (cause_id, recipient, channel) in causes:
            obs.repeated_causes["notify.delivery"] += 1
        causes.add((cause_id, recipient, channel))
        if channel == "email":
            obs._deliveries[ref] = (*key, status)
            if status == "failed":
                obs.deliveries_not_sent += 1


def observe_mailbox(messages, obs: Observation) -> None:
    """One effect per distinct Message-ID: a resend carries the same Message-ID and counts once.
    Call after observe_stores: a mail is traced to its delivery (and so its cause) by its Message-ID."""
    seen: set[str] = set()
    obs.mails_received = len(messages)
    for message in messages:
        message_id = str(message.get("Message-ID", "")) or f"(none {len(seen)})"
        if message_id in seen:
            obs.mail_resends += 1
            continue
        seen.add(message_id)
        found = MESSAGE_ID.search(message_id)
        delivery = obs._deliveries.get(found.group(1)) if found else None
        key = delivery[:3] if delivery else ("?", "no delivery", "?")
        obs.effects[("notify", "mail", *key)] += 1
    received = {MESSAGE_ID.search(m).group(1) for m in seen if MESSAGE_ID.search(m)}
    obs.mails_missing = sum(1 for ref, d in obs._deliveries.items() if d[3] == "sent" and ref not in received)


async def group_backlog(client: aioredis.Redis, namespace: str, cap: int = 1000) -> dict[str, int]:
    """pending + unread entries of every consumer group on every stream (0 when all is read and
    acknowledged). Unread entries are counted after the group's last-delivered-id: the `lag` that
    XINFO GROUPS reports goes wrong once Redis reloaded its AOF (it kept showing entries as unread
    that the group had long read), so it is not used."""
    backlog: dict[str, int] = {}
    for group, producers in SUBSCRIPTIONS.items():
        for producer in producers:
            stream = stream_name(namespace, producer)
            backlog[f"{group}@{producer}"] = 0
            try:
                groups = await client.xinfo_groups(stream)
            except aioredis.ResponseError:
                continue  # no stream yet: nothing was ever published on it
            for info in groups:
                name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
                if name != group:
                    continue
                last = info["last-delivered-id"]
                last = last.decode() if isinstance(last, bytes) else last
                unread = len(await client.xrange(stream, min=f"({last}", max="+", count=cap))
                backlog[f"{group}@{producer}"] = int(info["pending"]) + unread
    return backlog


async def stream_lengths(client: aioredis.Redis, namespace: str) -> tuple[int, ...]:
    names = [stream_name(namespace, p) for p in PRODUCERS] + [dead_letter_stream(namespace)]
    return tuple([await client.xlen(n) for n in names])


async def dead_letters(client: aioredis.Redis, namespace: str) -> list[dict]:
    out = []
    for _id, fields in await client.xrange(dead_letter_stream(namespace)):
        out.append({k.decode(): (v.decode(errors="replace") if k != b"body" else v) for k, v in fields.items()})
    return out


async def outbox_backlogs(http: httpx.AsyncClient, urls: dict[str, str]) -> dict[str, int | None]:
    """Each service's unpublished outbox rows, or None when it does not answer."""
    async def one(url: str) -> int | None:
        try:
            response = await http.get(f"{url}/health/stats", timeout=3)
            return int(response.json()["outbox_backlog"]) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    values = await asyncio.gather(*(one(u) for u in urls.values()))
    return dict(zip(urls, values, strict=True))


async def healthy(http: httpx.AsyncClient, urls: dict[str, str]) -> bool:
    async def one(url: str) -> bool:
        try:
            return (await http.get(f"{url}/health", timeout=3)).status_code == 200
        except httpx.HTTPError:
            return False

    return all(await asyncio.gather(*(one(u) for u in urls.values())))


async def deliveries_due(notify_database: str) -> int:
    """Messages notify still has to send now (pending or being sent); held digests wait for their hour."""
    rows = await _rows(notify_database, select(Delivery.id).where(col(Delivery.status).in_(("pending", "sending"))))
    return len(rows)
