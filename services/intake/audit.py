"""The audit trail: every read and write of a case file, by whom, when and through which route,
as references only, in an append-only hash chain.

    python -m services.intake.audit verify    # exits 1 naming the first broken entry
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
from datetime import UTC, datetime

import structlog
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import text
from sqlmodel import col, select

from shared.auth import bearer_token

from .store import AuditEntry

log = structlog.get_logger("intake.audit")
GENESIS = "0" * 64
# The routes that read or change a case file, its requests, consents or erasures (API and console).
AUDITED = re.compile(r"^/(api/)?(case-files|requests|people|erasures|queue)(/|$)|^/(search|stays|places)?$")
REF_PARAMS = {"person_ref": "person_ref", "request_ref": "request_ref", "consent_ref": "other_ref",
              "erasure_ref": "other_ref"}


def entry_hash(previous_hash: str, entry: AuditEntry) -> str:
    at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
    content = json.dumps([at.astimezone(UTC).isoformat(), entry.actor, entry.action, entry.route, entry.person_ref,
                          entry.request_ref, entry.other_ref, entry.status], separators=(",", ":"))
    return hashlib.sha256((previous_hash + content).encode()).hexdigest()


async def append(sessions, *, actor: str, action: str, route: str, refs: dict, status: int) -> None:
    async with sessions() as session:
        if session.bind.dialect.name == "postgresql":
            # One writer at a time, so that no two entries chain to the same predecessor.
            await session.exec(text("SELECT pg_advisory_xact_lock(hashtext('refuge-intake-audit'))"))
        last = (await session.exec(select(AuditEntry.hash).order_by(col(AuditEntry.id).desc()).limit(1))).first()
        entry = AuditEntry(at=datetime.now(UTC).replace(microsecond=0), actor=actor, action=action, route=route,
                           status=status, previous_hash=last or GENESIS, hash="", **refs)
        entry.hash = entry_hash(entry.previous_hash, entry)
        session.add(entry)
        await session.commit()


def install(app, runtime) -> None:
    """Every case-file route, API or console, leaves an entry once answered (refused ones too)."""

    @app.middleware("http")
    async def audit_trail(request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", None)
        if template is None or not AUDITED.match(template):
            return response
        try:
            actor = runtime.signer.verify(bearer_token(request) or "").username
        except (BadSignature, SignatureExpired):
            return response  # not signed in: nothing was read
        params = request.scope.get("path_params", {})
        refs = {field: str(params[name])[:32] for name, field in REF_PARAMS.items() if name in params}
        await append(runtime.sessions, actor=actor, action=request.method, route=template, refs=refs,
                     status=response.status_code)
        return response


async def verify(sessions) -> tuple[int, int | None]:
    """(entries checked, id of the first broken entry or None)."""
    previous, checked = GENESIS, 0
    async with sessions() as session:
        for entry in (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all():
            if entry.previous_hash != previous or entry_hash(previous, entry) != entry.hash:
                return checked, entry.id
            previous, checked = entry.hash, checked + 1
    return checked, None


async def _verify_command() -> int:
    from shared.store import make_engine, session_factory

    from .settings import IntakeSettings

    engine = make_engine(IntakeSettings().database_url)
    try:
        checked, broken = await verify(session_factory(engine))
    finally:
        await engine.dispose()
    if broken is not None:
        print(f"audit trail broken at entry {broken} (after {checked} good entries): changed, deleted or reordered")
        return 1
    print(f"audit trail intact: {checked} entries")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["verify"]:
        sys.exit("usage: python -m services.intake.audit verify")
    sys.exit(asyncio.run(_verify_command()))
