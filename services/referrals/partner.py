"""The partner's page: opened from the signed link in a referral notice, no account needed.

It shows the referral's reference, the kind of help asked and, only when the person's consent
(or a recorded staff override) allows it right now, that the refuge will pass on their contact
details by phone; otherwise the referral is anonymous. Forms post the signed token and a page
nonce that works once: a replayed, forged or stale post changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shared.messaging import ServiceRuntime

from . import domain
from .domain import Action
from .handlers import PageUsed, ReferralNotFound, Referrals, StatusRaced
from .links import PATH, LinkClaim, LinkExpired, LinkRefused, PartnerLinks

log = structlog.get_logger("referrals.partner")

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("en", "fr", "nl")

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the page's address: never pass it on
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}

TEXT = {
    "en": {
        "title": "Referral {ref}", "from": "A referral from {refuge}", "help": "Help asked", "status": "Status",
        "made": "Made on", "answer_by": "Please answer by",
        "shared": "The person has agreed that {refuge} shares their contact details with you for this referral. "
                  "The refuge will give them to you by phone.",
        "anonymous": "This referral is anonymous: you receive no personal data. {refuge} will call you to discuss it.",
        "accept": "Accept the referral", "decline": "Decline", "decline_reason": "Reason",
        "complete": "Close the referral", "outcome": "Outcome", "got_help": "The person got help",
        "not_successful": "Not successful", "unsuccessful_reason": "Reason (if not successful)",
        "closed": "This referral is closed ({status}). Thank you.",
        "revoked": "The refuge has withdrawn this referral. Nothing more is needed from you.",
        "expired": "This referral expired without an answer. If you can still help, please call the refuge.",
        "done": "Thank you: the referral is now {status}.",
        "invalid_title": "This link is not valid",
        "invalid": "The link is incomplete or was changed. Please use the link from the e-mail exactly as you received it, "
                   "or ask the refuge for a new one.",
        "expired_title": "This link has expired",
        "expired_link": "For the person's safety, referral links work for a limited time. Please ask the refuge for a new one.",
        "used_title": "Nothing was changed",
        "used": "This form was already sent, or the referral changed meanwhile. Open the link again to see where it stands.",
        "missing": "Please choose a reason.",
        "pending": "waiting for your answer", "accepted": "accepted", "declined": "declined", "completed": "closed",
        "status_revoked": "withdrawn", "status_expired": "expired",
        "no_capacity": "No capacity at the moment", "not_eligible": "The person is not eligible",
        "outside_area": "Outside our area", "not_our_service": "We do not offer this", "other": "Other reason",
        "person_did_not_come": "The person did not come", "person_declined": "The person declined",
    },
    "fr": {
        "title": "Orientation {ref}", "from": "Une orientation de {refuge}", "help": "Aide demandée", "status": "Statut",
        "made": "Faite le", "answer_by": "Merci de répondre avant le",
        "shared": "La personne a accepté que {refuge} vous communique ses coordonnées pour cette orientation. "
                  "Le Refuge vous les donnera par téléphone.",
        "anonymous": "Cette orientation est anonyme : vous ne recevez aucune donnée personnelle. {refuge} vous appellera "
                     "pour en parler.",
        "accept": "Accepter l'orientation", "decline": "Refuser", "decline_reason": "Motif",
        "complete": "Clôturer l'orientation", "outcome": "Résultat", "got_help": "La personne a été aidée",
        "not_successful": "Sans succès", "unsuccessful_reason": "Motif (si sans succès)",
        "closed": "Cette orientation est clôturée ({status}). Merci.",
        "revoked": "Le Refuge a retiré cette orientation. Vous n'avez plus rien à faire.",
        "expired": "Cette orientation a expiré sans réponse. Si vous pouvez encore aider, appelez le Refuge.",
        "done": "Merci : l'orientation est maintenant {status}.",
        "invalid_title": "Ce lien n'est pas valable",
        "invalid": "Le lien est incomplet ou a été modifié. Utilisez le lien du courriel tel que vous l'avez reçu, "
                   "ou demandez-en un nouveau au Refuge.",
        "expired_title": "Ce lien a expiré",
        "expired_link": "Pour la sécurité de la personne, les liens ne fonctionnent qu'un temps. Demandez-en un nouveau au Refuge.",
        "used_title": "Rien n'a été modifié",
        "used": "Ce formulaire a déjà été envoyé, ou l'orientation a changé entre-temps. Rouvrez le lien pour voir où elle en est.",
        "missing": "Merci de choisir un motif.",
        "pending": "en attente de votre réponse", "accepted": "acceptée", "declined": "refusée", "completed": "clôturée",
        "status_revoked": "retirée", "status_expired": "expirée",
        "no_capacity": "Pas de place pour le moment", "not_eligible": "La personne n'est pas éligible",
        "outside_area": "Hors de notre zone", "not_our_service": "Nous ne proposons pas ce service", "other": "Autre motif",
        "person_did_not_come": "La personne n'est pas venue", "person_declined": "La personne a refusé",
    },
    "nl": {
        "title": "Doorverwijzing {ref}", "from": "Een doorverwijzing van {refuge}", "help": "Gevraagde hulp",
        "status": "Status", "made": "Gemaakt op", "answer_by": "Graag antwoorden vóór",
        "shared": "De persoon heeft ermee ingestemd dat {refuge} zijn of haar contactgegevens voor deze doorverwijzing met u "
                  "deelt. Le Refuge geeft ze u telefonisch door.",
        "anonymous": "Deze doorverwijzing is anoniem: u ontvangt geen persoonsgegevens. {refuge} belt u om ze te bespreken.",
        "accept": "Doorverwijzing aanvaarden", "decline": "Weigeren", "decline_reason": "Reden",
        "complete": "Doorverwijzing afsluiten", "outcome": "Resultaat", "got_help": "De persoon kreeg hulp",
        "not_successful": "Niet gelukt", "unsuccessful_reason": "Reden (als het niet lukte)",
        "closed": "Deze doorverwijzing is afgesloten ({status}). Dank u.",
        "revoked": "Le Refuge heeft deze doorverwijzing ingetrokken. U hoeft niets meer te doen.",
        "expired": "Deze doorverwijzing is verlopen zonder antwoord. Kunt u toch helpen, bel dan Le Refuge.",
        "done": "Dank u: de doorverwijzing is nu {status}.",
        "invalid_title": "Deze link is niet geldig",
        "invalid": "De link is onvolledig of werd gewijzigd. Gebruik de link uit de e-mail zoals u hem kreeg, of vraag "
                   "Le Refuge om een nieuwe.",
        "expired_title": "Deze link is verlopen",
        "expired_link": "Voor de veiligheid van de persoon werken links maar een tijd. Vraag Le Refuge om een nieuwe.",
        "used_title": "Er werd niets gewijzigd",
        "used": "Dit formulier werd al verstuurd, of de doorverwijzing is intussen gewijzigd. Open de link opnieuw om de stand "
                "te zien.",
        "missing": "Kies een reden.",
        "pending": "wacht op uw antwoord", "accepted": "aanvaard", "declined": "geweigerd", "completed": "afgesloten",
        "status_revoked": "ingetrokken", "status_expired": "verlopen",
        "no_capacity": "Momenteel geen plaats", "not_eligible": "De persoon komt niet in aanmerking",
        "outside_area": "Buiten ons werkgebied", "not_our_service": "Dit bieden wij niet aan", "other": "Andere reden",
        "person_did_not_come": "De persoon is niet gekomen", "person_declined": "De persoon weigerde",
    },
}


def status_word(t: dict, status: str) -> str:
    return t.get(f"status_{status}") or t.get(status) or status


def build_router(runtime: ServiceRuntime, referrals: Referrals, links: PartnerLinks, refuge_name: str) -> APIRouter:
    router = APIRouter(tags=["partner pages"], include_in_schema=True)
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))

    stylesheet = (TEMPLATES / "partner" / "partner.css").read_text()

    @router.get("/partner/assets/partner.css", include_in_schema=False)
    async def partner_css() -> Response:
        # Served, not inlined, so the pages' policy needs no 'unsafe-inline'.
        return Response(stylesheet, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})

    def page(template: str, code: int, lang: str, **context) -> HTMLResponse:
        t = TEXT[lang]
        html = env.get_template(template).render(t=t, lang=lang, refuge=refuge_name, languages=LANGUAGES, **context)
        return HTMLResponse(html, status_code=code, headers=SECURITY_HEADERS)

    def problem(kind: str, lang: str, code: int) -> HTMLResponse:
        t = TEXT[lang]
        return page("partner/problem.html", code, lang, heading=t[f"{kind}_title"],
                    message=t["expired_link" if kind == "expired" else kind])

    def pick_language(lang: str | None, partner: dict | None) -> str:
        if lang in LANGUAGES:
            return lang
        return domain.notice_language(partner) if partner else "en"

    async def claim(token: str) -> LinkClaim:
        found = links.read(token)
        async with runtime.sessions() as session:
            try:
                referral = await referrals.get(session, found.referral_ref)
            except ReferralNotFound:
                raise LinkRefused("no such referral") from None
        if referral.link_nonce != found.nonce:
            raise LinkRefused("link cancelled")
        return found

    async def show(token: str, lang: str | None, *, done: str | None = None, error: str | None = None,
                   code: int = 200) -> Response:
        try:
            found = await claim(token)
        except LinkExpired:
            log.info("partner_link.expired")
            return problem("expired", pick_language(lang, None), 410)
        except LinkRefused:
            log.info("partner_link.refused")
            return problem("invalid", pick_language(lang, None), 400)
        async with runtime.uow() as uow:
            referral = await referrals.get(uow.session, found.referral_ref)
            partner = await referrals.partner(uow.session, referral.partner_ref)
            shares = await referrals.shares_now(uow.session, referral)
            nonce = None
            if referral.status in domain.OPEN_STATUSES:
                nonce = await referrals.issue_page_nonce(uow, referral.referral_ref)
            await uow.commit()
        language = pick_language(lang, partner)
        t = TEXT[language]
        log.info("partner_link.opened", referral_ref=referral.referral_ref, status=referral.status)
        return page("partner/referral.html", code, language, referral=referral, token=token, nonce=nonce,
                    category=domain.CATEGORIES[referral.category][language], shares=shares,
                    status_text=status_word(t, referral.status), done=status_word(t, done) if done else None,
                    error=error, decline_reasons=domain.DECLINE_REASONS,
                    unsuccessful_reasons=domain.UNSUCCESSFUL_REASONS, path=PATH,
                    language_links={code_: f"{PATH}?{urlencode({'token': token, 'lang': code_})}" for code_ in LANGUAGES})

    @router.get(PATH, response_class=HTMLResponse, summary="the partner's page for one referral")
    async def open_referral(token: str = Query("", max_length=2000), lang: str | None = Query(None, max_length=2),
                            done: str | None = Query(None, max_length=20)) -> Response:
        return await show(token, lang, done=done if done in domain.Status.__members__ else None)

    @router.post(PATH, response_class=HTMLResponse, summary="accept, decline or complete a referral")
    async def answer(request: Request, token: str = Form("", max_length=2000), page_nonce: str = Form("", max_length=100),
                     action: str = Form("", max_length=20), reason_code: str = Form("", max_length=40),
                     outcome: str = Form("", max_length=20), lang: str = Form("", max_length=2)) -> Response:
        language = lang if lang in LANGUAGES else None
        try:
            found = await claim(token)
        except LinkExpired:
            return problem("expired", pick_language(language, None), 410)
        except LinkRefused:
            return problem("invalid", pick_language(language, None), 400)
        if action not in ("accept", "decline", "complete") or not page_nonce:
            return problem("used", pick_language(language, None), 409)
        incomplete = False
        async with runtime.uow() as uow:
            try:
                referral = await referrals.change_status(
                    uow, found.referral_ref, Action(action), actor="partner-link", reason_code=reason_code or None,
                    outcome=outcome or None, page_nonce=page_nonce)
                await uow.commit()
            except (PageUsed, StatusRaced, domain.TransitionRefused):
                log.info("partner_link.refused_post", referral_ref=found.referral_ref, action=action)
                return problem("used", pick_language(language, None), 409)
            except ValueError:
                incomplete = True
        if incomplete:  # a reason or an outcome is missing: show the page again, nothing changed
            return await show(token, language, error=TEXT[pick_language(language, None)]["missing"], code=422)
        query = {"token": token, "done": referral.status}
        if language:
            query["lang"] = language
        return RedirectResponse(f"{PATH}?{urlencode(query)}", status_code=303, headers=SECURITY_HEADERS)

    return router
