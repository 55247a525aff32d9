"""Intake's use cases: one unit of work each.

Every command takes the acting staff member's username (`actor`) and records it, so an audit
log can later be written from this one place.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import insert
from sqlmodel import col, delete, select

from shared.events import Envelope, new_ref
from shared.events.codes import Decision, PlaceKind, Track
from shared.events.intake import ConsentGiven, ConsentWithdrawn, ErasureRequested, RequestAssessed, RequestReceived
from shared.messaging import Prepared, UnitOfWork
from shared.observability import current_traceparent
from shared.store import GroupCommit

from . import domain
from .keys import DEV_KEY_RING, DEV_SEARCH_KEY, KeyRing, Vault
from .schemas import CONSENT_REF, PERSON_REF, REQUEST_REF, ConsentIn, ErasureIn, FollowUpIn, NewRequest, OverrideIn
from .store import (
    AssessmentRecord, CaseFile, Consent, Erasure, ErasureConfirmation, FollowUp, HelpRequest, TimelineEntry,
)

log = structlog.get_logger("intake")


class NotFound(Exception):
    """What does not exist, or is not the caller's to see."""


class Invalid(Exception):
    """Input that is well formed but cannot be accepted; names the field and the reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass
class Recorded:
    """A call for help as recorded: the case file, the request, the rules' assessment, and the two
    events that announce them."""

    person: CaseFile
    request: HelpRequest
    assessment: AssessmentRecord
    received: Envelope
    assessed: Envelope
    new_person: bool

    def write(self, uow: UnitOfWork) -> None:
        if self.new_person:
            uow.defer(CASE_FILE_ROW, _row(self.person))
        uow.defer(REQUEST_ROW, _row(self.request))
        uow.defer(ASSESSMENT_ROW, _row(self.assessment))
        uow.emit_envelope(self.received)
        uow.emit_envelope(self.assessed)


CASE_FILE_ROW = insert(CaseFile.__table__)
REQUEST_ROW = insert(HelpRequest.__table__)
ASSESSMENT_ROW = insert(AssessmentRecord.__table__)


def _row(record) -> dict:
    return {column: getattr(record, column) for column in record.__table__.columns.keys() if column != "id"}


async def _write_recorded(uow: UnitOfWork, calls: list[Recorded]) -> None:
    for recorded in calls:
        recorded.write(uow)


class Intake:
    def __init__(self, *, youth_band: tuple[int, int] = (18, 25), minor_follow_up_days: int = 7,
                 timezone: str = "Europe/Brussels", now=None, vault: Vault | None = None, uows):
        self.uows = uows
        self._new_people = GroupCommit(uows, _write_recorded)
        self.youth_band = youth_band
        self.minor_follow_up_days = minor_follow_up_days
        self.zone = ZoneInfo(timezone)
        self.now = now or (lambda: datetime.now(UTC))
        self.vault = vault or Vault(KeyRing(DEV_KEY_RING), DEV_SEARCH_KEY)

    def today(self) -> date:
        return self.now().astimezone(self.zone).date()

    # --- commands -------------------------------------------------------------------------

    async def record_request(self, data: NewRequest, *, actor: str) -> Recorded:
        """A call for help, assessed at once. A new person's call reads nothing from the store, so
        it is written with the others recorded at the same moment (one transaction for them all);
        a call from someone known updates their case file in a unit of work of its own."""
        now = self.now()
        if data.person_ref is None:
            person = CaseFile(person_ref=new_ref("P"), created_by=actor, created_at=now)
            data_key = await self.vault.new_key(person.person_ref)
            self._fill_case_file(person, data_key, {"name": data.name}, data, now)
            recorded = self._recorded(person, data_key, data, actor, now, new_person=True)
            await self._new_people.submit(recorded)
        else:
            async with self.uows() as uow:
                person = (await uow.session.exec(select(CaseFile).where(
                    CaseFile.person_ref == data.person_ref, col(CaseFile.erased_at).is_(None)))).first()
                if person is None:
                    raise Invalid("person_ref", "no such case file")
                data_key = await self.vault.key_for(uow.session, person.person_ref, create=True)
                self._fill_case_file(person, data_key, Vault.open(data_key, person.person_ref, person.sealed), data, now)
                uow.session.add(person)
                recorded = self._recorded(person, data_key, data, actor, now, new_person=False)
                recorded.write(uow)
                await uow.commit()
        log.info("request.recorded", request_ref=recorded.request.request_ref, event_id=recorded.received.event_id,
                 decision=recorded.assessment.decision, track=recorded.assessment.track, actor=actor)
        return recorded

    def _fill_case_file(self, person: CaseFile, data_key: bytes, known: dict, data: NewRequest, now: datetime) -> None:
        # The latest call gives the latest safe way to reach the person.
        known["date_of_birth"] = data.date_of_birth.isoformat() if data.date_of_birth else known.get("date_of_birth")
        known["phone"] = data.phone or known.get("phone")
        known["email"] = str(data.email) if data.email else known.get("email")
        person.sealed = Vault.seal(data_key, person.person_ref, known)
        person.stated_age = data.stated_age if data.stated_age is not None else person.stated_age
        person.language = data.language.value
        person.safe_to_leave_message = data.safe_to_leave_message
        person.preferred_contact = data.preferred_contact.value
        person.name_key = self.vault.name_hash(known.get("name") or "")
        person.name_tokens = self.vault.name_token_hashes(known.get("name") or "")
        person.phone_key = self.vault.phone_hash(known.get("phone"))
        person.email_key = self.vault.email_hash(known.get("email"))
        person.updated_at = now

    def _recorded(self, person: CaseFile, data_key: bytes, data: NewRequest, actor: str, now: datetime, *,
                  new_person: bool) -> Recorded:
        request = HelpRequest(
            request_ref=new_ref("R"),
            person_ref=person.person_ref,
            channel=data.channel.value,
            caller=data.caller.value,
            sealed=Vault.seal(data_key, person.person_ref, {
                "caller_name": data.caller_name, "caller_organisation": data.caller_organisation, "notes": data.notes,
                "cadal": data.cadal.model_dump(mode="json") if data.cadal else None}),
            situation=data.situation.value,
            urgency=data.urgency.value,
            needs=[n.value for n in data.needs],
            received_at=now,
            recorded_by=actor,
        )
        assessment = domain.assess(
            domain.AssessmentInput(
                today=self.today(),
                situation=data.situation,
                date_of_birth=data.date_of_birth,
                stated_age=data.stated_age,
                cadal=domain.CadalCriteria(**data.cadal.model_dump()) if data.cadal else None,
                youth_min_age=self.youth_band[0],
                youth_max_age=self.youth_band[1],
                minor_follow_up_days=self.minor_follow_up_days,
            )
        )
        request.needs_review = assessment.needs_review
        request.follow_up_on = assessment.follow_up_on
        # The events are made here, so that they carry this request's trace even when another
        # request's task writes them.
        received = Envelope.wrap(RequestReceived(request_ref=request.request_ref, person_ref=person.person_ref,
                                                 channel=data.channel, received_at=now),
                                 traceparent=current_traceparent())
        assessed = Envelope.wrap(_assessed(request, assessment, overridden=False), causation=received)  # same trace
        return Recorded(person, request, _record(request.request_ref, assessment, decided_at=now, decided_by="rules"),
                        received, assessed, new_person)

    async def override(self, uow: UnitOfWork, request_ref: str, data: OverrideIn, *, actor: str) -> AssessmentRecord:
        request = await _request(uow, request_ref)
        current = await current_assessment(uow.session, request_ref)
        try:
            decided = domain.override(_assessment(current), data.decision, data.place_kind, data.reason)
        except domain.OverrideRefused as exc:
            raise Invalid(exc.field, exc.reason) from None
        now = self.now()
        data_key = await self.vault.key_for(uow.session, request.person_ref, create=True)
        record = _record(request_ref, decided, decided_at=now, decided_by=actor)
        record.sealed = Vault.seal(data_key, request.person_ref, {"override_reason": data.reason.strip()})
        request.needs_review = False
        uow.session.add_all([request, record])
        changed = (decided.decision.value, _value(decided.place_kind)) != (current.decision, current.place_kind)
        emitted = uow.emit(_assessed(request, decided, overridden=True)) if changed else None
        await uow.commit()
        log.info("request.overridden", request_ref=request_ref, decision=decided.decision.value, actor=actor,
                 event_id=emitted.event_id if emitted else None)
        return record

    async def record_follow_up(self, uow: UnitOfWork, request_ref: str, data: FollowUpIn, *, actor: str) -> FollowUp:
        request = await _request(uow, request_ref)
        data_key = await self.vault.key_for(uow.session, request.person_ref, create=True)
        follow_up = FollowUp(request_ref=request_ref, done_at=self.now(), done_by=actor,
                             sealed=Vault.seal(data_key, request.person_ref, {"note": data.note}),
                             next_follow_up_on=data.next_follow_up_on)
        request.follow_up_on = data.next_follow_up_on
        uow.session.add_all([request, follow_up])
        await uow.commit()
        log.info("request.followed_up", request_ref=request_ref, actor=actor)
        return follow_up

    async def give_consent(self, uow: UnitOfWork, person_ref: str, data: ConsentIn, *, actor: str) -> Consent:
        await case_file(uow.session, person_ref)
        if data.expires_on is not None and data.expires_on < self.today():
            raise Invalid("expires_on", "must not be in the past")
        consent = Consent(consent_ref=new_ref("C"), person_ref=person_ref, partner_ref=data.partner_ref,
                          purpose=data.purpose, expires_on=data.expires_on, given_at=self.now(), given_by=actor)
        uow.session.add(consent)
        emitted = uow.emit(ConsentGiven(consent_ref=consent.consent_ref, person_ref=person_ref,
                                        partner_ref=consent.partner_ref, purpose=consent.purpose,
                                        expires_on=consent.expires_on))
        await uow.commit()
        log.info("consent.given", consent_ref=consent.consent_ref, event_id=emitted.event_id, actor=actor)
        return consent

    async def withdraw_consent(self, uow: UnitOfWork, person_ref: str, consent_ref: str, *, actor: str) -> Consent:
        check_ref(person_ref, PERSON_REF)
        check_ref(consent_ref, CONSENT_REF)
        consent = (await uow.session.exec(select(Consent).where(Consent.consent_ref == consent_ref,
                                                                 Consent.person_ref == person_ref))).first()
        if consent is None:
            raise NotFound(consent_ref)
        if consent.withdrawn_at is not None:
            await uow.commit()  # nothing changed; committing keeps the row readable after the unit of work
            return consent  # withdrawing twice tells no one again
        consent.withdrawn_at = self.now()
        consent.withdrawn_by = actor
        uow.session.add(consent)
        emitted = uow.emit(ConsentWithdrawn(consent_ref=consent_ref, person_ref=person_ref,
                                            partner_ref=consent.partner_ref, purpose=consent.purpose))
        await uow.commit()
        log.info("consent.withdrawn", consent_ref=consent_ref, event_id=emitted.event_id, actor=actor)
        return consent

    async def request_erasure(self, uow: UnitOfWork, person_ref: str, data: ErasureIn, *, actor: str) -> Erasure:
        """Erase everything intake holds about the person and ask every other service to do the same (Art. 17)."""
        person = await case_file(uow.session, person_ref)
        now = self.now()
        erasure = Erasure(erasure_ref=new_ref("E"), person_ref=person_ref, requested_at=now, requested_by=actor,
                          reason=data.reason.strip())
        erasure.records_erased = await erase_person(uow.session, person, now) + 1  # + the data key
        uow.session.add(erasure)
        emitted = uow.emit(ErasureRequested(erasure_ref=erasure.erasure_ref, person_ref=person_ref))
        await uow.commit()
        # Without the data key, no copy of intake's store, however old, opens the person's data again.
        await self.vault.shred(person_ref)
        log.info("erasure.requested", erasure_ref=erasure.erasure_ref, event_id=emitted.event_id,
                 records_erased=erasure.records_erased, actor=actor)
        return erasure

    async def closed_case_files(self, session, closed_days: int) -> list[str]:
        """Case files whose person left or was not taken on (discharged, declined, supported or
        referred), with no follow-up planned and nothing recorded for more than `closed_days` days."""
        cutoff = self.now() - timedelta(days=closed_days)
        people = (await session.exec(select(CaseFile.person_ref).where(col(CaseFile.erased_at).is_(None)))).all()
        closed = []
        for person_ref in people:
            requests = (await session.exec(select(HelpRequest).where(HelpRequest.person_ref == person_ref)
                                           .order_by(col(HelpRequest.id)))).all()
            if any(r.follow_up_on is not None or r.needs_review for r in requests):
                continue
            refs = [r.request_ref for r in requests]
            decisions = (await session.exec(select(AssessmentRecord).where(
                col(AssessmentRecord.request_ref).in_(refs)).order_by(col(AssessmentRecord.id)))).all() if refs else []
            follow_ups = (await session.exec(select(FollowUp.done_at).where(
                col(FollowUp.request_ref).in_(refs)))).all() if refs else []
            timeline = (await session.exec(select(TimelineEntry).where(TimelineEntry.person_ref == person_ref)
                                           .order_by(col(TimelineEntry.occurred_at), col(TimelineEntry.id)))).all()
            latest = decisions[-1].decision if decisions else None
            if domain.where_now([(t.event_type, t.details) for t in timeline], latest) not in CLOSED:
                continue
            moments = [r.received_at for r in requests] + [d.decided_at for d in decisions] + list(follow_ups) + \
                      [t.occurred_at for t in timeline]
            if moments and max(_utc(m) for m in moments) < cutoff:
                closed.append(person_ref)
        return closed

    async def apply_retention(self, runtime, closed_days: int) -> list[str]:
        """Request the erasure of every case file closed for longer than the retention period."""
        async with runtime.sessions() as session:
            closed = await self.closed_case_files(session, closed_days)
        for person_ref in closed:
            async with runtime.uow() as uow:
                await self.request_erasure(uow, person_ref, ErasureIn(
                    reason=f"retention: closed for more than {closed_days} days"), actor="retention")
        if closed:
            log.info("retention.applied", erased=len(closed), closed_days=closed_days)
        return closed


CLOSED = {"discharged", "declined", "supported", "referred"}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def retention_task(intake: Intake, runtime, closed_days: int, every_seconds: float):
    async def retention() -> None:
        while True:
            try:
                await intake.apply_retention(runtime, closed_days)
            except Exception as exc:  # the next pass tries again; the service keeps running
                log.error("retention.failed", error=type(exc).__name__)
            await asyncio.sleep(every_seconds)
    return retention


async def erase_person(session, person: CaseFile, now: datetime) -> int:
    """Intake's own part of an erasure. What survives holds no personal data: the case file's
    reference as a tombstone, each request's channel, urgency and decisions (codes), and the
    admissions housing announced, so the anonymous public counters stay as they were."""
    person_ref = person.person_ref
    erased = 1
    person.sealed, person.name_key, person.name_tokens = None, "", ""
    person.stated_age = person.phone_key = person.email_key = None
    person.language, person.safe_to_leave_message, person.preferred_contact = "", False, ""
    person.erased_at = person.updated_at = now
    session.add(person)
    requests = (await session.exec(select(HelpRequest).where(HelpRequest.person_ref == person_ref))).all()
    refs = [r.request_ref for r in requests]
    for request in requests:
        request.sealed, request.needs, request.situation = None, [], "erased"
        request.needs_review, request.follow_up_on = False, None
        session.add(request)
        erased += 1
    if refs:
        for record in (await session.exec(select(AssessmentRecord)
                                          .where(col(AssessmentRecord.request_ref).in_(refs)))).all():
            record.rules, record.sealed, record.follow_up_on = [], None, None
            session.add(record)
            erased += 1
        erased += (await session.exec(delete(FollowUp).where(col(FollowUp.request_ref).in_(refs)))).rowcount or 0
    for entry in (await session.exec(select(TimelineEntry).where(TimelineEntry.person_ref == person_ref))).all():
        if entry.event_type == "PersonAdmitted":
            entry.details = {"place_kind": (entry.details or {}).get("place_kind")}
            session.add(entry)
        else:
            await session.delete(entry)
        erased += 1
    erased += (await session.exec(delete(Consent).where(Consent.person_ref == person_ref))).rowcount or 0
    return erased


async def case_file(session, person_ref: str) -> CaseFile:
    check_ref(person_ref, PERSON_REF)
    person = (await session.exec(select(CaseFile).where(CaseFile.person_ref == person_ref,
                                                        col(CaseFile.erased_at).is_(None)))).first()
    if person is None:
        raise NotFound(person_ref)
    return person


def check_ref(ref: str, pattern: str) -> str:
    """A reference that cannot exist is simply not found (and never reaches the store)."""
    if not re.fullmatch(pattern, ref):
        raise NotFound(ref)
    return ref


async def _request(uow: UnitOfWork, request_ref: str) -> HelpRequest:
    check_ref(request_ref, REQUEST_REF)
    request = (await uow.session.exec(
        select(HelpRequest).join(CaseFile, col(CaseFile.person_ref) == col(HelpRequest.person_ref))
        .where(HelpRequest.request_ref == request_ref, col(CaseFile.erased_at).is_(None)))).first()
    if request is None:
        raise NotFound(request_ref)
    return request


async def current_assessment(session, request_ref: str) -> AssessmentRecord:
    record = (await session.exec(
        select(AssessmentRecord).where(AssessmentRecord.request_ref == request_ref)
        .order_by(col(AssessmentRecord.id).desc()).limit(1)
    )).first()
    if record is None:
        raise NotFound(request_ref)
    return record


def _value(enum) -> str | None:
    return enum.value if enum is not None else None


def _record(request_ref: str, assessment: domain.Assessment, *, decided_at: datetime,
            decided_by: str) -> AssessmentRecord:
    return AssessmentRecord(
        request_ref=request_ref,
        decision=assessment.decision.value,
        track=assessment.track.value,
        place_kind=_value(assessment.place_kind),
        rules=[asdict(r) for r in assessment.rules],
        needs_review=assessment.needs_review,
        refer_to=assessment.refer_to,
        follow_up_on=assessment.follow_up_on,
        decided_at=decided_at,
        decided_by=decided_by,
    )


def _assessment(record: AssessmentRecord) -> domain.Assessment:
    return domain.Assessment(
        decision=Decision(record.decision),
        track=Track(record.track),
        place_kind=PlaceKind(record.place_kind) if record.place_kind else None,
        rules=tuple(domain.RuleResult(**r) for r in record.rules),
        needs_review=record.needs_review,
        follow_up_on=record.follow_up_on,
        refer_to=record.refer_to,
    )


def _assessed(request: HelpRequest, assessment: domain.Assessment, *, overridden: bool) -> RequestAssessed:
    # References and codes only: nothing from the case file travels (rule 7).
    return RequestAssessed(
        request_ref=request.request_ref, person_ref=request.person_ref,
        decision=assessment.decision, track=assessment.track, place_kind=assessment.place_kind,
        urgency=request.urgency, needs=tuple(request.needs), overridden=overridden,
        refer_to=assessment.refer_to, follow_up_on=assessment.follow_up_on,
    )


# --- events from the other services ---------------------------------------------------------

TIMELINE_LINE = insert(TimelineEntry.__table__)


async def add_to_timeline(uow: UnitOfWork, envelope: Envelope, event) -> None:
    """Other services' events about a person become lines of the case file's timeline."""
    person_ref = getattr(event, "person_ref", None)
    if person_ref is None:
        return
    uow.defer(TIMELINE_LINE, {"person_ref": person_ref, "event_id": envelope.event_id, "event_type": envelope.type,
                              "occurred_at": envelope.occurred_at,
                              "details": event.model_dump(mode="json", exclude={"person_ref"})})
    log.info("timeline.added", event_id=envelope.event_id, event_type=envelope.type)


async def _reads_nothing(_uow: UnitOfWork, _events: list) -> None:
    """A timeline line needs nothing from the store: a run of them is written in one statement."""


TIMELINE_EVENTS = (
    "PersonAdmitted", "PersonWaitlisted", "StayExtended", "PersonMoved", "StayEnding", "PersonDischarged",
    "ReferralMade", "ReferralStatusChanged",
)


async def record_erasure_confirmed(uow: UnitOfWork, envelope: Envelope, event) -> None:
    """Housing, referrals and notify each confirm an erasure intake asked for; each counts once."""
    known = (await uow.session.exec(select(Erasure.id).where(Erasure.erasure_ref == event.erasure_ref))).first()
    if known is None:
        log.warning("erasure.confirmed_unknown", event_id=envelope.event_id, erasure_ref=event.erasure_ref)
        return
    already = (await uow.session.exec(select(ErasureConfirmation.id).where(
        ErasureConfirmation.erasure_ref == event.erasure_ref, ErasureConfirmation.service == event.service))).first()
    if already is None:
        uow.session.add(ErasureConfirmation(erasure_ref=event.erasure_ref, service=event.service,
                                            records_erased=event.records_erased, confirmed_at=envelope.occurred_at,
                                            event_id=envelope.event_id))
    log.info("erasure.confirmed", event_id=envelope.event_id, erasure_ref=event.erasure_ref, service=event.service)


HANDLERS = dict.fromkeys(TIMELINE_EVENTS, Prepared(add_to_timeline, _reads_nothing))
HANDLERS["ErasureConfirmed"] = record_erasure_confirmed
