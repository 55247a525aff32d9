"""Intake's use cases: one unit of work each."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

import structlog

from shared.events import Envelope, new_ref
from shared.events.intake import RequestAssessed, RequestReceived
from shared.messaging import UnitOfWork

from . import domain
from .schemas import NewRequest
from .store import AssessmentRecord, CaseFile, HelpRequest, TimelineEntry

log = structlog.get_logger("intake")


async def record_request(uow: UnitOfWork, data: NewRequest, *, youth_band: tuple[int, int], recorded_by: str = "api"):
    now = datetime.now(UTC)
    person = CaseFile(
        person_ref=new_ref("P"),
        name=data.name,
        date_of_birth=data.date_of_birth,
        stated_age=data.stated_age,
        language=data.language.value,
        phone=data.phone,
        email=str(data.email) if data.email else None,
        safe_to_leave_message=data.safe_to_leave_message,
    )
    request = HelpRequest(
        request_ref=new_ref("R"),
        person_ref=person.person_ref,
        channel=data.channel.value,
        caller=data.caller.value,
        situation=data.situation.value,
        urgency=data.urgency.value,
        needs=[n.value for n in data.needs],
        notes=data.notes,
        received_at=now,
        recorded_by=recorded_by,
    )
    assessment = domain.assess(
        domain.AssessmentInput(
            today=now.date(),
            situation=data.situation,
            date_of_birth=data.date_of_birth,
            stated_age=data.stated_age,
            cadal=domain.CadalCriteria(**data.cadal.model_dump()) if data.cadal else None,
            youth_min_age=youth_band[0],
            youth_max_age=youth_band[1],
        )
    )
    record = AssessmentRecord(
        request_ref=request.request_ref,
        decision=assessment.decision.value,
        track=assessment.track.value,
        place_kind=assessment.place_kind.value if assessment.place_kind else None,
        rules=[asdict(r) for r in assessment.rules],
        decided_at=now,
    )
    uow.session.add_all([person, request, record])
    received = uow.emit(
        RequestReceived(
            request_ref=request.request_ref, person_ref=person.person_ref,
            channel=data.channel, received_at=now,
        )
    )
    uow.emit(
        RequestAssessed(
            request_ref=request.request_ref, person_ref=person.person_ref,
            decision=assessment.decision, track=assessment.track, place_kind=assessment.place_kind,
            urgency=data.urgency, needs=tuple(data.needs),
        ),
        causation=received,
    )
    await uow.commit()
    log.info("request.recorded", request_ref=request.request_ref, event_id=received.event_id,
             decision=assessment.decision.value)
    return person, request, record


async def add_to_timeline(uow: UnitOfWork, envelope: Envelope, event) -> None:
    """Other services' events about a person become lines of the case file's timeline."""
    person_ref = getattr(event, "person_ref", None)
    if person_ref is None:
        return
    details = event.model_dump(mode="json", exclude={"person_ref"})
    uow.session.add(
        TimelineEntry(
            person_ref=person_ref, event_id=envelope.event_id, event_type=envelope.type,
            occurred_at=envelope.occurred_at, details=details,
        )
    )
    log.info("timeline.added", event_id=envelope.event_id, event_type=envelope.type)


TIMELINE_EVENTS = ("PersonAdmitted", "PersonWaitlisted", "StayEnding", "PersonDischarged", "ReferralMade")
HANDLERS = {name: add_to_timeline for name in TIMELINE_EVENTS}
