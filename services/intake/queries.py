"""What staff read: case files, requests, today's queue, search, likely matches, public counters.

Each read takes the reader's username (`actor`), so that reading personal data can later be
written to an audit log from this one place.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, date, datetime, time as clock
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, true
from sqlmodel import col, select

from shared.events.codes import Decision, Track

from . import domain
from .handlers import NotFound, case_file, check_ref
from .access import Scope
from .keys import Vault

HEALTH_NEEDS = {"mental_health", "physical_health"}


def visible_to(scope: Scope | None):
    """SQL condition on CaseFile: the case files the scope may see."""
    if scope is None or scope.all_files:
        return true()
    recorded = select(HelpRequest.person_ref).where(HelpRequest.recorded_by == scope.username)
    followed = (select(HelpRequest.person_ref).join(FollowUp, col(FollowUp.request_ref) == col(HelpRequest.request_ref))
                .where(FollowUp.done_by == scope.username))
    return or_(CaseFile.created_by == scope.username, col(CaseFile.person_ref).in_(recorded),
               col(CaseFile.person_ref).in_(followed))


async def check_visible(session, scope: Scope | None, person_ref: str) -> None:
    """404 for a case file that is not the caller's to see."""
    if scope is None or scope.all_files:
        return
    seen = (await session.exec(select(CaseFile.id).where(CaseFile.person_ref == person_ref, visible_to(scope)))).first()
    if seen is None:
        raise NotFound(person_ref)
from .schemas import (
    ERASURE_REF, PERSON_REF, REQUEST_REF, AssessmentOut, ConsentOut, ErasureConfirmationOut, ErasureOut, CaseFileOut, CaseFileSummary, CounterOut, CountersOut, FollowUpOut, MatchOut, MatchQuery,
    QueueItem, QueueOut, RequestOut, RuleOut, TimelineOut,
)
from .store import (
    AssessmentRecord, CaseFile, Consent, Erasure, ErasureConfirmation, FollowUp, HelpRequest, TimelineEntry,
)


def opened(vault: Vault, key: bytes | None, person: CaseFile) -> dict:
    """The case file's sealed fields in clear: name, date_of_birth (a date), phone, email."""
    fields = Vault.open(key, person.person_ref, person.sealed)
    born = fields.get("date_of_birth")
    return {"name": fields.get("name", ""), "date_of_birth": date.fromisoformat(born) if born else None,
            "phone": fields.get("phone"), "email": fields.get("email")}


def person_age(fields: dict, person: CaseFile, today: date) -> int | None:
    if fields.get("date_of_birth") is not None:
        return domain.age_on(fields["date_of_birth"], today)
    return person.stated_age


async def _assessments(session, request_refs: list[str]) -> dict[str, list[AssessmentRecord]]:
    found: dict[str, list[AssessmentRecord]] = defaultdict(list)
    if not request_refs:
        return found
    rows = (await session.exec(
        select(AssessmentRecord).where(col(AssessmentRecord.request_ref).in_(request_refs))
        .order_by(col(AssessmentRecord.id))
    )).all()
    for row in rows:
        found[row.request_ref].append(row)
    return found


def _reason(record: AssessmentRecord, key: bytes | None, person_ref: str) -> str | None:
    return Vault.open(key, person_ref, record.sealed).get("override_reason")


def _assessment_out(record: AssessmentRecord, key: bytes | None = None, person_ref: str = "") -> AssessmentOut:
    return AssessmentOut(
        decision=record.decision, track=record.track, place_kind=record.place_kind, needs_review=record.needs_review,
        refer_to=record.refer_to, follow_up_on=record.follow_up_on, decided_at=record.decided_at,
        decided_by=record.decided_by, override_reason=_reason(record, key, person_ref),
        rules=[RuleOut(**r) for r in record.rules],
    )


def request_out(request: HelpRequest, history: list[AssessmentRecord], key: bytes | None = None,
                scope: Scope | None = None) -> RequestOut:
    current = history[-1]
    return RequestOut(
        request_ref=request.request_ref, person_ref=request.person_ref, received_at=request.received_at,
        recorded_by=request.recorded_by, channel=request.channel, caller=request.caller,
        situation=request.situation, urgency=request.urgency,
        needs=[n for n in request.needs if scope is None or scope.health or n not in HEALTH_NEEDS],
        decision=current.decision, track=current.track, place_kind=current.place_kind,
        needs_review=request.needs_review, refer_to=current.refer_to, follow_up_on=request.follow_up_on,
        decided_by=current.decided_by, decided_at=current.decided_at, override_reason=_reason(current, key, request.person_ref),
        rules=[RuleOut(**r) for r in current.rules],
        history=[_assessment_out(r, key, request.person_ref) for r in history],
    )


async def get_request(session, request_ref: str, *, actor: str, vault: Vault, scope: Scope | None = None) -> RequestOut:
    check_ref(request_ref, REQUEST_REF)
    request = (await session.exec(
        select(HelpRequest).join(CaseFile, col(CaseFile.person_ref) == col(HelpRequest.person_ref))
        .where(HelpRequest.request_ref == request_ref, col(CaseFile.erased_at).is_(None)))).first()
    if request is None:
        raise NotFound(request_ref)
    await check_visible(session, scope, request.person_ref)
    history = (await _assessments(session, [request_ref]))[request_ref]
    return request_out(request, history, await vault.key_for(session, request.person_ref), scope)


async def get_case_file(session, person_ref: str, *, actor: str, today: date, vault: Vault,
                        scope: Scope | None = None) -> CaseFileOut:
    person = await case_file(session, person_ref)
    await check_visible(session, scope, person_ref)
    key = await vault.key_for(session, person_ref)
    fields = opened(vault, key, person)
    requests = (await session.exec(
        select(HelpRequest).where(HelpRequest.person_ref == person_ref).order_by(col(HelpRequest.id).desc())
    )).all()
    refs = [r.request_ref for r in requests]
    histories = await _assessments(session, refs)
    follow_ups = (await session.exec(
        select(FollowUp).where(col(FollowUp.request_ref).in_(refs)).order_by(col(FollowUp.id))
    )).all() if refs else []
    timeline = await get_timeline(session, person_ref, actor=actor)
    latest_decision = histories[refs[0]][-1].decision if refs else None
    return CaseFileOut(
        person_ref=person.person_ref, name=fields["name"], date_of_birth=fields["date_of_birth"],
        stated_age=person.stated_age, age=person_age(fields, person, today), language=person.language,
        phone=fields["phone"], email=fields["email"], safe_to_leave_message=person.safe_to_leave_message,
        preferred_contact=person.preferred_contact, created_at=person.created_at,
        where_now=domain.where_now([(t.event_type, t.details) for t in timeline], latest_decision),
        requests=[request_out(r, histories[r.request_ref], key, scope) for r in requests],
        follow_ups=[FollowUpOut(request_ref=f.request_ref, done_at=f.done_at, done_by=f.done_by,
                                note=Vault.open(key, person_ref, f.sealed).get("note"),
                                next_follow_up_on=f.next_follow_up_on) for f in follow_ups],
        timeline=timeline,
        consents=await consents_of(session, person_ref, today=today),
    )


def consent_out(c: Consent, today: date) -> ConsentOut:
    in_force = c.withdrawn_at is None and (c.expires_on is None or today <= c.expires_on)
    return ConsentOut(consent_ref=c.consent_ref, person_ref=c.person_ref, partner_ref=c.partner_ref, purpose=c.purpose,
                      expires_on=c.expires_on, given_at=c.given_at, given_by=c.given_by, withdrawn_at=c.withdrawn_at,
                      withdrawn_by=c.withdrawn_by, in_force=in_force)


async def consents_of(session, person_ref: str, *, today: date) -> list[ConsentOut]:
    rows = (await session.exec(select(Consent).where(Consent.person_ref == person_ref)
                               .order_by(col(Consent.id).desc()))).all()
    return [consent_out(c, today) for c in rows]


async def get_timeline(session, person_ref: str, *, actor: str, scope: Scope | None = None) -> list[TimelineOut]:
    check_ref(person_ref, PERSON_REF)
    await case_file(session, person_ref)
    await check_visible(session, scope, person_ref)
    rows = (await session.exec(
        select(TimelineEntry).where(TimelineEntry.person_ref == person_ref)
        .order_by(col(TimelineEntry.occurred_at), col(TimelineEntry.id))
    )).all()
    return [TimelineOut(event_type=r.event_type, occurred_at=r.occurred_at, details=r.details) for r in rows]


async def queue(session, *, actor: str, today: date, zone: ZoneInfo, vault: Vault, scope: Scope | None = None) -> QueueOut:
    """New: received today. Pending: waiting for a staff decision, or a follow-up due by today."""
    # Stored times are UTC; the refuge's day starts at midnight in its own time zone.
    start_of_day = datetime.combine(today, clock.min, tzinfo=zone).astimezone(UTC)
    rows = (await session.exec(
        select(HelpRequest, CaseFile).join(CaseFile, col(CaseFile.person_ref) == col(HelpRequest.person_ref))
        .where(or_(col(HelpRequest.received_at) >= start_of_day, col(HelpRequest.needs_review).is_(True),
                   col(HelpRequest.follow_up_on) <= today), col(CaseFile.erased_at).is_(None), visible_to(scope))
        .order_by(col(HelpRequest.received_at))
    )).all()
    histories = await _assessments(session, [r.request_ref for r, _ in rows])
    keys = await vault.keys_for(session, [p.person_ref for _, p in rows])
    new, pending = [], []
    for request, person in rows:
        current = histories[request.request_ref][-1]
        due = request.follow_up_on is not None and request.follow_up_on <= today
        item = QueueItem(
            request_ref=request.request_ref, person_ref=person.person_ref,
            name=opened(vault, keys.get(person.person_ref), person)["name"],
            received_at=request.received_at, channel=request.channel, urgency=request.urgency,
            decision=current.decision, track=current.track, needs_review=request.needs_review,
            follow_up_on=request.follow_up_on, follow_up_due=due,
        )
        (pending if request.needs_review or due else new).append(item)
    urgency_order = {"immediate": 0, "days": 1, "weeks": 2}
    pending.sort(key=lambda i: (urgency_order.get(i.urgency, 3), i.received_at))
    return QueueOut(today=today, new=new, pending=pending)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def search(session, q: str, *, actor: str, today: date, vault: Vault, scope: Scope | None = None,
                 limit: int = 50) -> list[CaseFileSummary]:
    """By reference (a case file's P-… or a request's R-…) or by part of a name."""
    q = q.strip()
    ref = q.upper()
    person_refs: set[str] = set()
    if ref.startswith("R-"):
        person_refs |= set((await session.exec(
            select(HelpRequest.person_ref).where(HelpRequest.request_ref == "R-" + q[2:].lower()))).all())
    if ref.startswith("P-"):
        person_refs.add("P-" + q[2:].lower())
    query = select(CaseFile)
    # Every word of the query (or its beginning) must be one of the name's hashed words.
    tokens = vault.query_token_hashes(q)
    conditions = [col(CaseFile.person_ref).in_(person_refs)] if person_refs else []
    if tokens:
        conditions.append(and_(*(col(CaseFile.name_tokens).like(f"%{t}%") for t in tokens)))
    if not conditions:
        return []
    people = (await session.exec(query.where(or_(*conditions), col(CaseFile.erased_at).is_(None), visible_to(scope))
                                 .order_by(col(CaseFile.id)).limit(limit))).all()
    keys = await vault.keys_for(session, [p.person_ref for p in people])
    names = {p.person_ref: opened(vault, keys.get(p.person_ref), p) for p in people}
    people = sorted(people, key=lambda p: domain.name_key(names[p.person_ref]["name"]))
    refs = [p.person_ref for p in people]
    latest: dict[str, HelpRequest] = {}
    if refs:
        for request in (await session.exec(
                select(HelpRequest).where(col(HelpRequest.person_ref).in_(refs)).order_by(col(HelpRequest.id)))).all():
            latest[request.person_ref] = request
    histories = await _assessments(session, [r.request_ref for r in latest.values()])
    out = []
    for person in people:
        request = latest.get(person.person_ref)
        current = histories[request.request_ref][-1] if request else None
        out.append(CaseFileSummary(
            person_ref=person.person_ref, name=names[person.person_ref]["name"],
            age=person_age(names[person.person_ref], person, today),
            last_request_ref=request.request_ref if request else None,
            last_received_at=request.received_at if request else None,
            decision=current.decision if current else None, track=current.track if current else None,
        ))
    return out


async def likely_matches(session, query: MatchQuery, *, actor: str, vault: Vault,
                         scope: Scope | None = None) -> list[MatchOut]:
    new = domain.Known("", vault.name_hash(query.name), query.date_of_birth,
                       vault.phone_hash(query.phone), vault.email_hash(str(query.email) if query.email else None))
    conditions = [col(CaseFile.name_key) == new.name_key]
    if new.phone_key:
        conditions.append(col(CaseFile.phone_key) == new.phone_key)
    if new.email_key:
        conditions.append(col(CaseFile.email_key) == new.email_key)
    candidates = (await session.exec(select(CaseFile).where(or_(*conditions), col(CaseFile.erased_at).is_(None))
                                     .limit(200))).all()
    keys = await vault.keys_for(session, [c.person_ref for c in candidates])
    by_ref = {c.person_ref: opened(vault, keys.get(c.person_ref), c) for c in candidates}
    known = [domain.Known(c.person_ref, c.name_key, by_ref[c.person_ref]["date_of_birth"], c.phone_key, c.email_key)
             for c in candidates]
    # A likely match on someone else's case file is named by reference only: linking the call to it
    # is what makes it the worker's to see.
    mine = {ref for ref in (await session.exec(select(CaseFile.person_ref).where(
        col(CaseFile.person_ref).in_(list(by_ref)), visible_to(scope)))).all()} if by_ref else set()
    return [MatchOut(person_ref=m.person_ref, name=by_ref[m.person_ref]["name"] if m.person_ref in mine else "",
                     date_of_birth=by_ref[m.person_ref]["date_of_birth"] if m.person_ref in mine else None,
                     reasons=list(m.reasons))
            for m in domain.likely_matches(new, known)]


async def names_for(session, person_refs: list[str], *, vault: Vault, scope: Scope | None = None) -> dict[str, str]:
    if not person_refs:
        return {}
    people = (await session.exec(select(CaseFile).where(col(CaseFile.person_ref).in_(person_refs),
                                                        col(CaseFile.erased_at).is_(None), visible_to(scope)))).all()
    keys = await vault.keys_for(session, [p.person_ref for p in people])
    return {p.person_ref: opened(vault, keys.get(p.person_ref), p)["name"] for p in people}


# --- erasure and the person's own copy (Art. 15, 17) ------------------------------------------

ERASURE_CONFIRMERS = ("housing", "referrals", "notify")


async def get_erasure(session, erasure_ref: str) -> ErasureOut:
    check_ref(erasure_ref, ERASURE_REF)
    erasure = (await session.exec(select(Erasure).where(Erasure.erasure_ref == erasure_ref))).first()
    if erasure is None:
        raise NotFound(erasure_ref)
    confirmations = (await session.exec(select(ErasureConfirmation).where(
        ErasureConfirmation.erasure_ref == erasure_ref).order_by(col(ErasureConfirmation.id)))).all()
    confirmed = {c.service for c in confirmations}
    waiting = [s for s in ERASURE_CONFIRMERS if s not in confirmed]
    return ErasureOut(
        erasure_ref=erasure.erasure_ref, person_ref=erasure.person_ref, requested_at=erasure.requested_at,
        requested_by=erasure.requested_by, reason=erasure.reason, records_erased=erasure.records_erased,
        confirmations=[ErasureConfirmationOut(service=c.service, records_erased=c.records_erased,
                                              confirmed_at=c.confirmed_at) for c in confirmations],
        waiting_for=waiting, complete=not waiting,
    )


async def export_person(session, person_ref: str, *, actor: str, today: date, vault: Vault,
                        scope: Scope | None = None) -> dict:
    """Everything intake holds about the person, as one JSON document (Art. 15)."""
    case = await get_case_file(session, person_ref, actor=actor, today=today, vault=vault, scope=scope)
    key = await vault.key_for(session, person_ref)
    requests = (await session.exec(select(HelpRequest).where(HelpRequest.person_ref == person_ref)
                                   .order_by(col(HelpRequest.id)))).all()
    recorded = [{"request_ref": r.request_ref, **Vault.open(key, person_ref, r.sealed)} for r in requests]
    return {"exported_at": datetime.now(UTC).isoformat(), "service": "intake",
            "case_file": case.model_dump(mode="json"), "requests_as_recorded": recorded}


# --- public counters --------------------------------------------------------------------------

COUNTER_RULE = ("Counts under 5 are shown as '<5'; larger counts are rounded down to a multiple of 5 "
                "and shown as e.g. '40+', so that no single person can be singled out.")
SUPPORTED_DECISIONS = {Decision.accommodate.value, Decision.waitlist.value, Decision.support_only.value,
                       Decision.refer.value}
YOUTH_TRACKS = {Track.youth.value, Track.upstream.value, Track.minor.value}


async def exact_counts(session) -> dict[str, int]:
    """Since opening: young people given a place in the youth refuge (from housing's PersonAdmitted
    events), young people the youth programmes took on, and every request decided."""
    admitted = (await session.exec(
        select(TimelineEntry.person_ref, TimelineEntry.details).where(TimelineEntry.event_type == "PersonAdmitted")
    )).all()
    accommodated = {person for person, details in admitted if (details or {}).get("place_kind") != "cadal"}
    decided = (await session.exec(
        select(AssessmentRecord.request_ref, AssessmentRecord.decision, AssessmentRecord.track)
        .order_by(col(AssessmentRecord.id))
    )).all()
    current = {ref: (decision, track) for ref, decision, track in decided}
    owners = dict((await session.exec(select(HelpRequest.request_ref, HelpRequest.person_ref))).all())
    supported = {owners[ref] for ref, (decision, track) in current.items()
                 if ref in owners and decision in SUPPORTED_DECISIONS and track in YOUTH_TRACKS}
    return {
        "young_people_accommodated": len(accommodated),
        "young_people_supported": len(supported | accommodated),
        "requests_processed": len(current),
    }


class PublicCounters:
    """Computed at most every `cache_seconds`, so public traffic never weighs on the store."""

    def __init__(self, sessions, cache_seconds: float):
        self.sessions = sessions
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, CountersOut] | None = None

    async def get(self) -> CountersOut:
        if self._cached and time.monotonic() - self._cached[0] < self.cache_seconds:
            return self._cached[1]
        async with self.sessions() as session:
            counts = await exact_counts(session)
        out = CountersOut(
            counters=[CounterOut(key=key, shown=c.shown, at_least=c.at_least)
                      for key, c in ((k, domain.coarse_count(v)) for k, v in counts.items())],
            rule=COUNTER_RULE,
        )
        self._cached = (time.monotonic(), out)
        return out
