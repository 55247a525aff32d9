"""Referrals' use cases, one unit of work each."""

import structlog
from sqlmodel import select

from shared.events import Envelope
from shared.events.referrals import PersonFollowed
from shared.messaging import UnitOfWork

from .store import FollowedPerson

log = structlog.get_logger("referrals")


async def follow(uow: UnitOfWork, envelope: Envelope, event) -> None:
    """Everyone who reached a decision or a stay is followed from now on."""
    person_ref = event.person_ref
    existing = (await uow.session.exec(select(FollowedPerson).where(FollowedPerson.person_ref == person_ref))).first()
    if existing is not None:
        existing.last_event = envelope.type
        uow.session.add(existing)
        return
    reason = getattr(event, "decision", None) or envelope.type
    uow.session.add(FollowedPerson(person_ref=person_ref, reason=str(reason), last_event=envelope.type))
    uow.emit(PersonFollowed(person_ref=person_ref, reason=str(reason)), causation=envelope)
    log.info("person.followed", event_id=envelope.event_id)


HANDLERS = {"RequestAssessed": follow, "PersonAdmitted": follow}
