"""Referrals' use cases, one unit of work each: events from intake and housing, staff commands,
partner answers and the expiry clock."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import bindparam, delete, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from shared.events import Envelope, new_ref
from shared.events.codes import Need, Track
from shared.events.erasure import ErasureConfirmed
from shared.events.referrals import PersonFollowed, ReferralMade, ReferralStatusChanged
from shared.messaging import Prepared, UnitOfWork, UnitOfWorkFactory

from . import directory, domain
from .domain import Action, Status
from .store import Consent, FollowedPerson, PageNonce, Partner, PersonNeed, Referral, ReferralChange

log = structlog.get_logger("referrals")

# Built once: every assessed request runs them, and building a statement costs more than SQLite answering it.
FOLLOWED = select(FollowedPerson).where(col(FollowedPerson.person_ref) == bindparam("person_ref"))
NEED_OF = select(PersonNeed.id).where(col(PersonNeed.person_ref) == bindparam("person_ref"),
                                      col(PersonNeed.need) == bindparam("need"))
FOLLOW = insert(FollowedPerson.__table__)
LAST_EVENT = (update(FollowedPerson.__table__).where(FollowedPerson.__table__.c.person_ref == bindparam("ref"))
              .values(last_event=bindparam("event")))
ADD_NEED = insert(PersonNeed.__table__)
FOLLOWED_AMONG = select(FollowedPerson.person_ref).where(
    col(FollowedPerson.person_ref).in_(bindparam("refs", expanding=True)))
NEEDS_OF = select(PersonNeed.person_ref, PersonNeed.need).where(col(PersonNeed.person_ref).in_(bindparam("refs", expanding=True)))
# uow.memo keys, for a run of events: who is followed (person_ref -> the row this run will write, or
# None when stored), and which (person_ref, need) are recorded.
FOLLOWING, NEEDS = "referrals.following", "referrals.needs"


class UnknownPartner(LookupError):
    pass


class ConsentMissing(Exception):
    """Sharing personal data was asked for, no consent covers it and no override reason was given."""


class ReferralNotFound(LookupError):
    pass


class PageUsed(Exception):
    """The form's page nonce was already used, or never issued for this referral."""


class StatusRaced(Exception):
    """Someone else changed the referral between reading and writing it."""


class Referrals:
    def __init__(self, settings, *, now: Callable[[], datetime] | None = None):
        self.settings = settings
        self.now = now or (lambda: datetime.now(UTC))
        self.answer_within = timedelta(hours=settings.answer_within_hours)
        self.preferred = {"youth_services": settings.youth_services_partner_ref or None,
                          "housing_search": settings.housing_search_partner_ref or None}

    def handlers(self) -> dict:
        return {
            "RequestAssessed": Prepared(self.on_request_assessed, self.prepare_following),
            "PersonAdmitted": Prepared(self.on_person_admitted, self.prepare_following),
            "StayEnding": self.on_stay_ending,
            "ConsentGiven": self.on_consent_given,
            "ConsentWithdrawn": self.on_consent_withdrawn,
            "ErasureRequested": self.on_erasure_requested,
        }

    async def on_erasure_requested(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        """GDPR Art. 17 in one unit of work: needs, consents and the follow-up go; referrals stay
        (their partner was told, and statistics count them by status) under a per-erasure tombstone,
        with override reasons and the cause blanked and nothing left to share."""
        session = uow.session
        erased = 0
        for table in (FollowedPerson, PersonNeed, Consent):
            result = await session.exec(delete(table).where(col(table.person_ref) == event.person_ref))
            erased += result.rowcount or 0
        result = await session.exec(update(Referral).where(col(Referral.person_ref) == event.person_ref).values(
            person_ref=domain.tombstone(event.erasure_ref), cause_ref=None, consent_ref=None, share_requested=False,
            override_reason=None, override_by=None, override_at=None, updated_at=self.now()))
        erased += result.rowcount or 0
        uow.emit(ErasureConfirmed(erasure_ref=event.erasure_ref, person_ref=event.person_ref, service="referrals",
                                  records_erased=erased), causation=envelope)
        log.info("erasure.done", event_id=envelope.event_id, erasure_ref=event.erasure_ref, records_erased=erased)

    # --- events ----------------------------------------------------------------------------

    async def prepare_following(self, uow: UnitOfWork, events: list) -> None:
        """Who of a run's people is followed already, and which of their needs are recorded."""
        refs = {event.person_ref for _, event in events}
        uow.memo[FOLLOWING] = dict.fromkeys((await uow.session.exec(FOLLOWED_AMONG, params={"refs": list(refs)})).all())
        uow.memo[NEEDS] = set((await uow.session.exec(NEEDS_OF, params={"refs": list(refs)})).all())

    async def on_request_assessed(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        await self._follow(uow, envelope, event.person_ref, str(event.decision))
        recorded = uow.memo.get(NEEDS)
        for need in event.needs:
            if recorded is None:
                exists = (await uow.session.exec(NEED_OF, params={"person_ref": event.person_ref, "need": need.value})).first()
                if exists is None:
                    uow.session.add(PersonNeed(person_ref=event.person_ref, need=need.value, request_ref=event.request_ref))
            elif (event.person_ref, need.value) not in recorded:
                recorded.add((event.person_ref, need.value))
                uow.defer(ADD_NEED, {"person_ref": event.person_ref, "need": need.value, "request_ref": event.request_ref})
        if event.track is Track.minor:
            await uow.write_deferred()  # the referral below reads the store
            # Rule 2: a minor is never housed; the request becomes a referral to youth services.
            await self._refer_automatically(uow, envelope, event.person_ref, "youth_services",
                                            origin="minor_request", cause_ref=event.request_ref)
        log.info("request.assessed_seen", event_id=envelope.event_id, track=event.track.value)

    async def on_person_admitted(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        await self._follow(uow, envelope, event.person_ref, envelope.type)
        log.info("person.admitted_seen", event_id=envelope.event_id)

    async def on_stay_ending(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        """A stay nearing its end: refer for housing search when the case file has that need open."""
        need = (await uow.session.exec(select(PersonNeed.id).where(
            PersonNeed.person_ref == event.person_ref, PersonNeed.need == Need.housing_search.value))).first()
        if need is None:
            log.info("stay_ending.no_housing_need", event_id=envelope.event_id)
            return
        await self._refer_automatically(uow, envelope, event.person_ref, "housing_search",
                                        origin="stay_ending", cause_ref=event.stay_ref)

    async def on_consent_given(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        consent = (await uow.session.exec(select(Consent).where(Consent.consent_ref == event.consent_ref))).first()
        if consent is None:
            consent = Consent(consent_ref=event.consent_ref, person_ref=event.person_ref, partner_ref=event.partner_ref,
                              purpose=event.purpose)
        consent.expires_on = event.expires_on
        consent.given_at = self.now()
        uow.session.add(consent)
        log.info("consent.recorded", event_id=envelope.event_id)

    async def on_consent_withdrawn(self, uow: UnitOfWork, envelope: Envelope, event) -> None:
        consent = (await uow.session.exec(select(Consent).where(Consent.consent_ref == event.consent_ref))).first()
        if consent is None:  # withdrawn before we saw it given: remember the withdrawal all the same
            consent = Consent(consent_ref=event.consent_ref, person_ref=event.person_ref, partner_ref=event.partner_ref,
                              purpose=event.purpose)
        consent.withdrawn_at = self.now()  # when referrals learnt it: compared with override times
        uow.session.add(consent)
        log.info("consent.withdrawn", event_id=envelope.event_id)

    async def _follow(self, uow: UnitOfWork, envelope: Envelope, person_ref: str, reason: str) -> None:
        following = uow.memo.get(FOLLOWING)
        if following is None:
            existing = (await uow.session.exec(FOLLOWED, params={"person_ref": person_ref})).first()
            if existing is not None:
                existing.last_event = envelope.type
                uow.session.add(existing)
                return
            uow.session.add(FollowedPerson(person_ref=person_ref, reason=reason, last_event=envelope.type))
        elif person_ref in following:
            if (pending := following[person_ref]) is not None:
                pending["last_event"] = envelope.type  # followed earlier in this run: its row is not written yet
            else:
                uow.defer(LAST_EVENT, {"ref": person_ref, "event": envelope.type})
            return
        else:
            following[person_ref] = {"person_ref": person_ref, "reason": reason, "last_event": envelope.type}
            uow.defer(FOLLOW, following[person_ref])
        uow.emit(PersonFollowed(person_ref=person_ref, reason=reason), causation=envelope)

    async def _refer_automatically(self, uow: UnitOfWork, envelope: Envelope, person_ref: str, category: str,
                                   *, origin: str, cause_ref: str | None) -> Referral | None:
        earlier = (await uow.session.exec(select(Referral).where(
            Referral.person_ref == person_ref, Referral.category == category))).all()
        if any(r.status in domain.OPEN_STATUSES or (r.status == Status.completed and r.outcome == "got_help")
               for r in earlier):
            log.info("referral.already_open", event_id=envelope.event_id, category=category)
            return None
        tried = {r.partner_ref for r in earlier}
        partner = domain.choose_partner(await self.partners(uow.session), category, preferred=self.preferred.get(category),
                                        exclude=tried, home_region=self.settings.home_region)
        if partner is None:
            log.warning("referral.no_partner", event_id=envelope.event_id, category=category)
            return None
        service = domain.service_for(partner, category)
        return await self.make_referral(
            uow, person_ref=person_ref, partner_ref=partner["id"], category=category,
            service_ref=service["id"] if service else None, origin=origin, cause_ref=cause_ref,
            share_requested=True, made_by="system", causation=envelope)

    # --- commands --------------------------------------------------------------------------

    async def partners(self, session) -> list[dict]:
        rows = (await session.exec(select(Partner).order_by(col(Partner.name)))).all()
        return [row.document for row in rows]

    async def partner(self, session, partner_ref: str) -> dict | None:
        row = (await session.exec(select(Partner).where(Partner.partner_ref == partner_ref))).first()
        return row.document if row else None

    async def consents(self, session, person_ref: str) -> list[domain.ConsentView]:
        rows = (await session.exec(select(Consent).where(Consent.person_ref == person_ref))).all()
        return [domain.ConsentView(consent_ref=c.consent_ref, partner_ref=c.partner_ref, purpose=c.purpose,
                                   expires_on=c.expires_on, withdrawn=c.withdrawn_at is not None) for c in rows]

    async def make_referral(self, uow: UnitOfWork, *, person_ref: str, partner_ref: str, category: str,
                            service_ref: str | None = None, origin: str = "staff", cause_ref: str | None = None,
                            share_requested: bool = False, override_reason: str | None = None,
                            made_by: str, causation: Envelope | None = None) -> Referral:
        if category not in domain.CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        partner = await self.partner(uow.session, partner_ref)
        if partner is None:
            raise UnknownPartner(partner_ref)
        if service_ref and all(s["id"] != service_ref for s in partner.get("services") or []):
            raise ValueError("service_ref is not one of this partner's services")
        if service_ref is None and (service := domain.service_for(partner, category)) is not None:
            service_ref = service["id"]
        now = self.now()
        consent = domain.covering_consent(await self.consents(uow.session, person_ref), partner_ref, category, now.date())
        override_reason = (override_reason or "").strip() or None
        if share_requested and consent is None and override_reason is None and origin == "staff":
            raise ConsentMissing("no consent recorded for this partner and purpose")
        # An automatic referral never overrides: without consent it goes out anonymous.
        override = share_requested and consent is None and override_reason is not None
        referral = Referral(
            referral_ref=new_ref("RF"), person_ref=person_ref, partner_ref=partner_ref, service_ref=service_ref,
            category=category, origin=origin, cause_ref=cause_ref, status=Status.pending.value,
            share_requested=share_requested, consent_ref=consent.consent_ref if consent else None,
            override_reason=override_reason if override else None, override_by=made_by if override else None,
            override_at=now if override else None, made_by=made_by, created_at=now, updated_at=now,
            respond_by=now + self.answer_within, link_nonce=secrets.token_urlsafe(16),
        )
        uow.session.add(referral)
        uow.session.add(ReferralChange(referral_ref=referral.referral_ref, to_status=referral.status,
                                       actor_kind="system" if made_by == "system" else "staff", actor=made_by, at=now))
        shares = domain.may_share(share_requested=share_requested, consent=consent, override=override,
                                  withdrawn_since_override=False)
        emitted = uow.emit(ReferralMade(
            referral_ref=referral.referral_ref, person_ref=person_ref, partner_ref=partner_ref,
            service_category=category, shares_personal_data=shares, service_ref=service_ref, origin=origin,
            respond_by=referral.respond_by), causation=causation)
        log.info("referral.made", event_id=emitted.event_id, referral_ref=referral.referral_ref, category=category,
                 origin=origin, shares_personal_data=shares)
        return referral

    async def shares_now(self, session, referral: Referral) -> bool:
        """Checked at every disclosure: consent may have been given, have expired or been withdrawn since."""
        if not referral.share_requested:
            return False
        consent = domain.covering_consent(await self.consents(session, referral.person_ref), referral.partner_ref,
                                          referral.category, self.now().date())
        withdrawn_since = False
        if referral.override_at is not None:
            withdrawn = (await session.exec(select(Consent.id).where(
                Consent.person_ref == referral.person_ref, Consent.partner_ref == referral.partner_ref,
                col(Consent.withdrawn_at) >= referral.override_at))).first()
            withdrawn_since = withdrawn is not None
        return domain.may_share(share_requested=True, consent=consent, override=referral.override_at is not None,
                                withdrawn_since_override=withdrawn_since)

    async def get(self, session, referral_ref: str) -> Referral:
        referral = (await session.exec(select(Referral).where(Referral.referral_ref == referral_ref))).first()
        if referral is None:
            raise ReferralNotFound(referral_ref)
        return referral

    async def change_status(self, uow: UnitOfWork, referral_ref: str, action: Action, *, actor: str,
                            reason_code: str | None = None, outcome: str | None = None,
                            page_nonce: str | None = None) -> Referral:
        referral = await self.get(uow.session, referral_ref)
        change = domain.next_status(referral.status, action, reason_code=reason_code, outcome=outcome)
        now = self.now()
        if page_nonce is not None:
            used = await uow.session.exec(update(PageNonce).where(
                col(PageNonce.nonce) == page_nonce, col(PageNonce.referral_ref) == referral_ref,
                col(PageNonce.used_at).is_(None)).values(used_at=now, action=action.value))
            if used.rowcount != 1:
                raise PageUsed(referral_ref)
        previous = referral.status
        # Compare-and-set, so two replicas (or two tabs) cannot both move the same referral.
        moved = await uow.session.exec(update(Referral).where(
            col(Referral.id) == referral.id, col(Referral.status) == previous).values(
            status=change.status.value, reason_code=change.reason_code,
            outcome=change.outcome.value if change.outcome else referral.outcome, updated_at=now))
        if moved.rowcount != 1:
            raise StatusRaced(referral_ref)
        actor_kind = domain.ACTORS[action]
        uow.session.add(ReferralChange(referral_ref=referral_ref, from_status=previous, to_status=change.status.value,
                                       actor_kind=actor_kind, actor=actor, reason_code=change.reason_code,
                                       outcome=change.outcome.value if change.outcome else None, at=now))
        emitted = uow.emit(ReferralStatusChanged(
            referral_ref=referral_ref, person_ref=referral.person_ref, partner_ref=referral.partner_ref,
            status=change.status.value, previous_status=previous, reason_code=change.reason_code,
            outcome=change.outcome.value if change.outcome else None, actor_kind=actor_kind))
        log.info("referral.status_changed", event_id=emitted.event_id, referral_ref=referral_ref,
                 status=change.status.value, previous_status=previous)
        await uow.session.refresh(referral)
        return referral

    async def issue_page_nonce(self, uow: UnitOfWork, referral_ref: str) -> str:
        nonce = secrets.token_urlsafe(24)
        uow.session.add(PageNonce(nonce=nonce, referral_ref=referral_ref, issued_at=self.now()))
        return nonce

    # --- expiry clock ----------------------------------------------------------------------

    async def expire_due(self, uow_factory: UnitOfWorkFactory) -> int:
        """Pending referrals nobody answered in time become expired (notify alerts staff)."""
        now = self.now()
        async with uow_factory() as uow:
            due = (await uow.session.exec(select(Referral.referral_ref).where(
                Referral.status == Status.pending.value, col(Referral.respond_by) <= now)
                .order_by(col(Referral.respond_by)).limit(200))).all()
        expired = 0
        for referral_ref in due:
            async with uow_factory() as uow:
                try:
                    await self.change_status(uow, referral_ref, Action.expire, actor="expiry-clock")
                except (StatusRaced, domain.TransitionRefused):
                    continue  # answered, revoked or expired by another replica meanwhile
                await uow.commit()
                expired += 1
        return expired

    async def forget_old_page_nonces(self, uow_factory: UnitOfWorkFactory) -> None:
        """A page nonce is only useful while its link is: keep the table small."""
        cutoff = self.now() - timedelta(hours=self.settings.link_max_age_hours)
        async with uow_factory() as uow:
            await uow.session.exec(delete(PageNonce).where(col(PageNonce.issued_at) < cutoff))
            await uow.commit()

    async def run_expiry(self, uow_factory: UnitOfWorkFactory) -> None:
        loop = asyncio.get_running_loop()
        next_cleanup = loop.time()
        while True:
            try:
                await self.expire_due(uow_factory)
                if loop.time() >= next_cleanup:
                    await self.forget_old_page_nonces(uow_factory)
                    next_cleanup = loop.time() + 3600
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("expiry.failed", error=type(exc).__name__)
            await asyncio.sleep(self.settings.expiry_check_seconds)

    # --- directory -------------------------------------------------------------------------

    async def import_directory(self, uow: UnitOfWork, orgs: list[dict], *, replace: bool) -> dict:
        """Upsert every organisation by its HSDS id; with `replace`, drop the ones not in the import."""
        now = self.now()
        existing = {row.partner_ref: row for row in (await uow.session.exec(select(Partner))).all()}
        added = updated = 0
        for org in orgs:
            row = existing.get(org["id"])
            if row is None:
                uow.session.add(Partner(partner_ref=org["id"], name=org["name"][:300], document=org, updated_at=now))
                added += 1
            elif row.document != org:
                row.document, row.name, row.updated_at = org, org["name"][:300], now
                uow.session.add(row)
                updated += 1
        removed = 0
        if replace:
            gone = [ref for ref in existing if ref not in {o["id"] for o in orgs}]
            if gone:
                await uow.session.exec(delete(Partner).where(col(Partner.partner_ref).in_(gone)))
                removed = len(gone)
        return {"added": added, "updated": updated, "removed": removed, "total": len(orgs) if replace else
                len(existing) + added}


async def seed_directory(sessions, seed_file: Path | None = None) -> int:
    """Load the shipped directory into an empty store; a replica starting at once finds it done."""
    orgs = directory.load_seed(seed_file or directory.SEED_FILE)
    async with sessions() as session:
        if (await session.exec(select(func.count()).select_from(Partner))).one():
            return 0
        try:
            for org in orgs:
                session.add(Partner(partner_ref=org["id"], name=org["name"][:300], document=json.loads(json.dumps(org))))
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return 0
    log.info("directory.seeded", organisations=len(orgs))
    return len(orgs)
