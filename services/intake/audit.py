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
from types import SimpleNamespace

import structlog
from itsdangerous import BadSignature, SignatureExpired
from sqlalchemy import insert, text
from sqlmodel import col, select
from starlette.requests import Request

from shared.auth import VERIFIED_STAFF, bearer_token
from shared.store import GroupCommit

from .store import AuditEntry

log = structlog.get_logger("intake.audit")
GENESIS = "0" * 64
# The routes that read or change a case file, its requests, consents or erasures (API and console).
AUDITED = re.compile(r"^/(api/)?(case-files|requests|people|erasures|queue)(/|$)|^/(search|stays|places)?$")
REF_PARAMS = {"person_ref": "person_ref", "request_ref": "request_ref", "consent_ref": "other_ref",
              "erasure_ref": "other_ref"}


def entry_hash(previous_hash: str, entry) -> str:
    at = entry.at if entry.at.tzinfo else entry.at.replace(tzinfo=UTC)
    content = json.dumps([at.astimezone(UTC).isoformat(), entry.actor, entry.action, entry.route, entry.person_ref,
                          entry.request_ref, entry.other_ref, entry.status], separators=(",", ":"))
    return hashlib.sha256((previous_hash + content).encode()).hexdigest()


async def _chain(session, entries: list[dict]) -> None:
    """Appends entries after the last one, each hash covering its predecessor's."""
    if session.bind.dialect.name == "postgresql":
        # One writer at a time, so that no two entries chain to the same predecessor.
        await session.exec(text("SELECT pg_advisory_xact_lock(hashtext('refuge-intake-audit'))"))
    previous = (await session.exec(select(AuditEntry.hash).order_by(col(AuditEntry.id).desc()).limit(1))).first()
    previous = previous or GENESIS
    rows = []
    for fields in entries:
        row = {"person_ref": None, "request_ref": None, "other_ref": None, **fields, "previous_hash": previous}
        row["hash"] = previous = entry_hash(previous, SimpleNamespace(**row))
        rows.append(row)
    await session.execute(insert(AuditEntry.__table__), rows)


def trail(sessions) -> GroupCommit:
    """Entries of requests answered at the same moment share one transaction."""
    return GroupCommit(sessions, _chain)


def entry(*, actor: str, action: str, route: str, refs: dict, status: int) -> dict:
    return {"at": datetime.now(UTC).replace(microsecond=0), "actor": actor, "action": action, "route": route,
            "status": status, **refs}


class AuditTrail:
    """Pure ASGI middleware: every case-file route, API or console, leaves an entry once answered
    (refused ones too), written before the answer leaves."""

    def __init__(self, app, *, runtime, trail: GroupCommit):
        self.app = app
        self.runtime = runtime
        self.trail = trail

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_after_entry(message):
            if message["type"] == "http.response.start":
                await self._record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, send_after_entry)

    async def _record(self, scope, status: int) -> None:
        template = getattr(scope.get("route"), "path", None)
        if template is None or not AUDITED.match(template):
            return
        staff = scope.get(VERIFIED_STAFF)
        if staff is None:
            try:
                staff = self.runtime.signer.verify(bearer_token(Request(scope)) or "")
            except (BadSignature, SignatureExpired):
                return  # not signed in: nothing was read
        actor = staff.username
        params = scope.get("path_params", {})
        refs = {field: str(params[name])[:32] for name, field in REF_PARAMS.items() if name in params}
        await self.trail.submit(entry(actor=actor, action=scope["method"], route=template, refs=refs, status=status))


def install(app, runtime) -> None:
    app.add_middleware(AuditTrail, runtime=runtime, trail=trail(runtime.sessions))


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
