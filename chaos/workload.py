"""The workload: operations sent to the services as staff would, each recording the effects it expects.

An effect is a tuple naming the service, what it holds and the key it is held under, e.g.
("housing", "placement", "P-1a2b3c4d5e6f"). The checker counts effects in every store and the
mailbox and compares them with the sum of what the operations expect.

Adding an operation kind (extend a stay, discharge, make a referral, give or withdraw consent):
subclass `OperationKind`, give it a `weight`, let `ready()` say whether the ledger holds what it
needs (e.g. an accepted admission with a stay to extend), `perform()` the HTTP call and fill the
operation's status and refs, and say in `expected()` which effects an accepted one leaves. If it
leaves a kind of effect no store view reads yet, add that view in `chaos/observe.py`. Then add
it to `KINDS`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx

from shared.auth import DEV_SECRET, Role, TokenSigner

Effect = tuple[str, ...]

ACCEPTED, REFUSED, UNKNOWN = "accepted", "refused", "unknown"
SKIPPED = "skipped"  # nothing to do it on yet (e.g. no open stay): no call was made


@dataclass
class Operation:
    no: int
    kind: str
    marker: str  # unique per operation; the services store it (as the staff user's name, a reason...)
    status: str = ""
    detail: str = ""  # HTTP status or error class
    refs: dict = field(default_factory=dict)  # references the service answered with
    resolved: str = ""  # for unknown ones: "recorded" or "not recorded", found by the checker
    seconds: float = 0.0


@dataclass
class Ledger:
    operations: list[Operation] = field(default_factory=list)
    people: set[str] = field(default_factory=set)  # people the workload brought in
    consents_given: int = 0

    def add(self, op: Operation) -> None:
        self.operations.append(op)
        if op.status == ACCEPTED and op.kind == "request":
            self.people.add(op.refs["person_ref"])
        if op.status == ACCEPTED and op.kind == "give_consent":
            self.consents_given += 1

    def accepted(self, kind: str | None = None) -> list[Operation]:
        return [o for o in self.operations if o.status == ACCEPTED and (kind is None or o.kind == kind)]

    def counts(self) -> dict[str, int]:
        c = Counter(o.status for o in self.operations)
        return {"attempted": len(self.operations), ACCEPTED: c[ACCEPTED], REFUSED: c[REFUSED], UNKNOWN: c[UNKNOWN],
                SKIPPED: c[SKIPPED],
                "unknown_recorded": sum(1 for o in self.operations if o.resolved == "recorded"),
                "unknown_not_recorded": sum(1 for o in self.operations if o.resolved == "not recorded")}

    def by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter] = {}
        for o in self.operations:
            out.setdefault(o.kind, Counter())[o.status] += 1
        return {k: dict(v) for k, v in sorted(out.items())}


def family(effect: Effect) -> Effect:
    """An effect without its key: ("notify", "mail", "P-…", "placement", "x") -> ("notify", "mail", "placement", "x")."""
    return effect[:2] + effect[3:]


def staff_headers(username: str = "chaos-workload") -> dict[str, str]:
    token = TokenSigner(DEV_SECRET).issue(username, list(Role))
    return {"Authorization": f"Bearer {token}"}


@dataclass
class WorkloadContext:
    client: httpx.AsyncClient
    urls: dict[str, str]
    headers: dict[str, str]
    ledger: Ledger
    partners: list[str] = field(default_factory=list)
    consents: list[tuple[str, str]] = field(default_factory=list)  # (person, consent) given and not yet withdrawn


def classify(response: httpx.Response | None, error: Exception | None) -> tuple[str, str]:
    """accepted: 2xx; refused: any other answer, or nothing was sent; unknown: sent but never answered."""
    if error is None:
        assert response is not None
        return (ACCEPTED if 200 <= response.status_code < 300 else REFUSED), str(response.status_code)
    if isinstance(error, NOT_SENT):
        return REFUSED, type(error).__name__
    return UNKNOWN, type(error).__name__


NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


async def call(ctx: WorkloadContext, method: str, url: str, *, retry_for: float = 60.0, as_staff: str = "",
               **kwargs) -> tuple[str, str, httpx.Response | None]:
    """One HTTP call as staff would make it: while the service does not take the connection
    (restarting), try again; nothing was sent, so a retry cannot do the work twice.
    `as_staff` signs the call in that user's name: services record who did what, so an
    operation's marker used as the user name is found in their stores."""
    give_up = time.monotonic() + retry_for
    headers = staff_headers(as_staff) if as_staff else ctx.headers
    while True:
        try:
            response = await ctx.client.request(method, url, headers=headers, **kwargs)
        except NOT_SENT as exc:
            if time.monotonic() < give_up:
                await asyncio.sleep(0.25)
                continue
            return REFUSED, type(exc).__name__, None
        except httpx.HTTPError as exc:
            status, detail = classify(None, exc)
            return status, detail, None
        status, detail = classify(response, None)
        return status, detail, response


class OperationKind:
    name: str = ""
    weight: float = 1.0

    def ready(self, ledger: Ledger) -> bool:
        return True

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        raise NotImplementedError

    families: set[tuple[str, ...]] = set()  # effect families (effect without its key) it accounts for exactly

    def expected(self, op: Operation) -> Counter:
        """Effects of an accepted operation (or of an unknown one the checker found recorded)."""
        raise NotImplementedError

    def resolve(self, op: Operation, obs) -> None:
        """An unknown operation: done if a store holds its marker (obs.recorded: marker -> refs)."""
        found = obs.recorded.get(op.marker)
        if found and all(found.get(k) for k in self.resolved_needs):
            op.resolved = "recorded"
            op.refs.update(found)
        else:
            op.resolved = "not recorded"

    resolved_needs: tuple[str, ...] = ()


# Who asks for help, as the staff member types it in; decisions follow intake's published rules.
PROFILES = (
    ("excluded_youth", 0.70, {"situation": "excluded", "stated_age": 20}),
    ("cadal", 0.10, {"situation": "asylum_reception", "stated_age": 27,
                     "cadal": {"fedasil_designation_ref": "FED-CHAOS", "lgbtqia_asylum_seeker": True,
                               "faces_discrimination": True, "mental_health_compatible": True,
                               "accepts_house_rules": True}}),
    ("at_risk", 0.10, {"situation": "at_risk", "stated_age": 19}),
    ("minor", 0.05, {"situation": "excluded", "stated_age": 16}),
    ("over_age", 0.05, {"situation": "excluded", "stated_age": 31}),
)


class RecordRequest(OperationKind):
    """POST /api/requests at intake: a call for help, assessed at once."""

    name = "request"
    weight = 1.0
    resolved_needs = ("person_ref", "decision")

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        profile = rng.choices(PROFILES, weights=[p[1] for p in PROFILES])[0]
        body = {"name": op.marker, "language": rng.choice(["fr", "nl", "en"]), "channel": rng.choice(["phone", "walk_in", "partner"]),
                "urgency": rng.choice(["immediate", "days", "weeks"]), "needs": ["accommodation"], **profile[2]}
        status, detail, response = await call(ctx, "POST", f"{ctx.urls['intake']}/api/requests", json=body,
                                              as_staff=op.marker)
        op.status, op.detail = status, f"{profile[0]}:{detail}"
        if status == ACCEPTED and response is not None:
            data = response.json()
            op.refs = {k: data[k] for k in ("person_ref", "request_ref", "decision", "place_kind", "track")}

    # What the issue asks for: one placement, one followed person, one coordinator mail per
    # admission or waiting-list entry, one timeline line. Other effects of a request (needs,
    # automatic referrals of minors, partner mails) are secondary: checked for repeats only.
    # A minor is never housed: the request becomes one referral to youth services (rule 2).
    families = {("intake", "request"), ("referrals", "followed"), ("housing", "placement"),
                ("intake", "timeline", "placement"), ("notify", "delivery", "placement", "social_coordinator"),
                ("notify", "mail", "placement", "social_coordinator"), ("referrals", "referral", "youth_services")}

    def expected(self, op: Operation) -> Counter:
        person = op.refs["person_ref"]
        effects = Counter({("intake", "request", op.marker): 1, ("referrals", "followed", person): 1})
        if op.refs["decision"] == "accommodate":
            # housing admits or waitlists; notify mails the coordinator once; intake's timeline shows it
            effects.update({("housing", "placement", person): 1, ("intake", "timeline", person, "placement"): 1,
                            ("notify", "delivery", person, "placement", "social_coordinator"): 1,
                            ("notify", "mail", person, "placement", "social_coordinator"): 1})
        if op.refs.get("track") == "minor":
            effects.update({("referrals", "referral", person, "youth_services"): 1,
                            ("intake", "timeline", person, "ReferralMade"): 1})
        return effects


async def open_stay_of_ours(ctx: WorkloadContext, rng: random.Random) -> dict | None:
    """One open stay of someone the workload brought in, as housing lists them now."""
    status, _detail, response = await call(ctx, "GET", f"{ctx.urls['housing']}/api/stays")
    if status != ACCEPTED or response is None:
        return None
    ours = [s for s in response.json() if s["person_ref"] in ctx.ledger.people]
    return rng.choice(ours) if ours else None


class ExtendStay(OperationKind):
    """POST /api/stays/{ref}/extend at housing, the reason carrying the operation's marker."""

    name = "extend_stay"
    weight = 0.05
    resolved_needs = ("stay_ref",)
    families = {("housing", "extension"), ("intake", "timeline", "StayExtended")}

    def ready(self, ledger: Ledger) -> bool:
        return bool(ledger.people)

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        stay = await open_stay_of_ours(ctx, rng)
        if stay is None:
            op.status = SKIPPED
            return
        op.refs = {"stay_ref": stay["stay_ref"], "person_ref": stay["person_ref"]}
        new_end = date.fromisoformat(stay["planned_end"]) + timedelta(days=rng.randint(7, 60))
        body = {"new_end": new_end.isoformat(), "reason": op.marker, "approver": "chaos coordinator"}
        op.status, op.detail, _ = await call(ctx, "POST", f"{ctx.urls['housing']}/api/stays/{stay['stay_ref']}/extend",
                                             json=body)

    def expected(self, op: Operation) -> Counter:
        return Counter({("housing", "extension", op.marker): 1,
                        ("intake", "timeline", op.refs["person_ref"], "StayExtended"): 1})


class DischargeStay(OperationKind):
    """POST /api/stays/{ref}/discharge at housing, the follow-up plan carrying the operation's marker."""

    name = "discharge"
    weight = 0.03
    resolved_needs = ("stay_ref",)
    families = {("housing", "discharge"), ("intake", "timeline", "PersonDischarged"),
                ("notify", "delivery", "PersonDischarged", "social_coordinator"),
                ("notify", "mail", "PersonDischarged", "social_coordinator")}

    def ready(self, ledger: Ledger) -> bool:
        return bool(ledger.people)

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        stay = await open_stay_of_ours(ctx, rng)
        if stay is None:
            op.status = SKIPPED
            return
        op.refs = {"stay_ref": stay["stay_ref"], "person_ref": stay["person_ref"]}
        body = {"destination": rng.choice(["own_housing", "post_shelter", "family"]), "planned": True, "safe": True,
                "follow_up": op.marker}
        op.status, op.detail, _ = await call(ctx, "POST",
                                             f"{ctx.urls['housing']}/api/stays/{stay['stay_ref']}/discharge", json=body)

    def expected(self, op: Operation) -> Counter:
        person = op.refs["person_ref"]
        # the coordinator is told of the exit once; the freed place's alerts concern no person
        return Counter({("housing", "discharge", op.marker): 1, ("intake", "timeline", person, "PersonDischarged"): 1,
                        ("notify", "delivery", person, "PersonDischarged", "social_coordinator"): 1,
                        ("notify", "mail", person, "PersonDischarged", "social_coordinator"): 1})


async def partners_of(ctx: WorkloadContext) -> list[str]:
    """The partners in referrals' directory, read once per run."""
    if not ctx.partners:
        status, _d, response = await call(ctx, "GET", f"{ctx.urls['referrals']}/api/directory/organizations")
        if status == ACCEPTED and response is not None:
            ctx.partners = sorted(o["partner_ref"] for o in response.json())
    return ctx.partners


class MakeReferral(OperationKind):
    """POST /api/referrals at referrals: staff refer someone to a partner, anonymously. Each person
    is referred at most once per category by the workload, so (person, category) names the referral."""

    name = "referral"
    weight = 0.04
    CATEGORIES = ("legal_aid", "psychosocial_support", "language_integration", "health")
    families = {("referrals", "referral", c) for c in CATEGORIES} | {("intake", "timeline", "ReferralMade")}

    def __init__(self) -> None:
        self.taken: set[tuple[str, str]] = set()

    def ready(self, ledger: Ledger) -> bool:
        return bool(ledger.people)

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        partners = await partners_of(ctx)
        people = sorted(ctx.ledger.people)
        pair = next((p for p in ((rng.choice(people), rng.choice(self.CATEGORIES)) for _ in range(5))
                     if p not in self.taken), None)
        if not partners or pair is None:
            op.status = SKIPPED
            return
        person, category = pair
        self.taken.add(pair)
        op.refs = {"person_ref": person, "category": category}
        body = {"person_ref": person, "partner_ref": rng.choice(partners), "category": category,
                "share_personal_data": False}
        op.status, op.detail, response = await call(ctx, "POST", f"{ctx.urls['referrals']}/api/referrals", json=body)
        if op.status == ACCEPTED and response is not None:
            op.refs["referral_ref"] = response.json().get("referral_ref")

    def expected(self, op: Operation) -> Counter:
        person = op.refs["person_ref"]
        return Counter({("referrals", "referral", person, op.refs["category"]): 1,
                        ("intake", "timeline", person, "ReferralMade"): 1})

    def resolve(self, op: Operation, obs) -> None:
        done = obs.effects.get(("referrals", "referral", op.refs["person_ref"], op.refs["category"]), 0) > 0
        op.resolved = "recorded" if done else "not recorded"


class GiveConsent(OperationKind):
    """POST /api/case-files/{ref}/consents at intake, signed in as the operation's marker: the person
    lets a partner receive their data for referrals. Referrals and notify each keep one row of it."""

    name = "give_consent"
    weight = 0.04
    resolved_needs = ("consent_ref",)
    families = {("intake", "consent"), ("referrals", "consent"), ("notify", "consent")}

    def ready(self, ledger: Ledger) -> bool:
        return bool(ledger.people)

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        partners = await partners_of(ctx)
        if not partners:
            op.status = SKIPPED
            return
        person = rng.choice(sorted(ctx.ledger.people))
        op.refs = {"person_ref": person}
        body = {"partner_ref": rng.choice(partners), "purpose": "referral",
                "expires_on": (date.today() + timedelta(days=rng.randint(30, 365))).isoformat()}
        op.status, op.detail, response = await call(
            ctx, "POST", f"{ctx.urls['intake']}/api/case-files/{person}/consents", json=body, as_staff=op.marker)
        if op.status == ACCEPTED and response is not None:
            op.refs["consent_ref"] = response.json()["consent_ref"]
            ctx.consents.append((person, op.refs["consent_ref"]))

    def expected(self, op: Operation) -> Counter:
        ref = op.refs["consent_ref"]
        return Counter({("intake", "consent", op.marker): 1, ("referrals", "consent", ref): 1,
                        ("notify", "consent", ref): 1})


class WithdrawConsent(OperationKind):
    """POST /api/case-files/{ref}/consents/{consent}/withdraw at intake, signed in as the marker,
    for a consent the workload gave: referrals and notify mark their row withdrawn, once."""

    name = "withdraw_consent"
    weight = 0.02
    resolved_needs = ("consent_ref",)
    families = {("intake", "withdrawal"), ("referrals", "withdrawn"), ("notify", "withdrawn")}

    def ready(self, ledger: Ledger) -> bool:
        return ledger.consents_given > 0

    async def perform(self, ctx: WorkloadContext, op: Operation, rng: random.Random) -> None:
        if not ctx.consents:
            op.status = SKIPPED
            return
        person, consent_ref = ctx.consents.pop(rng.randrange(len(ctx.consents)))
        op.refs = {"person_ref": person, "consent_ref": consent_ref}
        op.status, op.detail, _ = await call(
            ctx, "POST", f"{ctx.urls['intake']}/api/case-files/{person}/consents/{consent_ref}/withdraw",
            as_staff=op.marker)

    def expected(self, op: Operation) -> Counter:
        ref = op.refs["consent_ref"]
        return Counter({("intake", "withdrawal", op.marker): 1, ("referrals", "withdrawn", ref): 1,
                        ("notify", "withdrawn", ref): 1})


KINDS: tuple[OperationKind, ...] = (RecordRequest(), ExtendStay(), DischargeStay(), MakeReferral(), GiveConsent(),
                                    WithdrawConsent())
KIND_BY_NAME = {k.name: k for k in KINDS}


class Workload:
    """Sends `ops` operations at `rate` per second from `concurrency` workers and records each."""

    def __init__(self, *, seed: int, ops: int, rate: float, concurrency: int, urls: dict[str, str],
                 http_timeout: float, kinds: tuple[OperationKind, ...] = KINDS,
                 hold: Callable[[], bool] = lambda: False):
        self.seed, self.ops, self.rate, self.concurrency = seed, ops, rate, concurrency
        self.urls, self.http_timeout, self.kinds = urls, http_timeout, kinds
        # Staff do not outrun the services forever: while `hold()` says they are too far behind,
        # no new operation starts, so the drain at the end measures recovery, not a queue.
        self.hold = hold
        self.ledger = Ledger()
        self.started = 0.0
        self.finished = 0.0
        self._next_due = 0.0

    def marker(self, no: int) -> str:
        return f"chaos-{self.seed}-{no:06d}"

    async def run(self) -> Ledger:
        # No keep-alive: a request either reaches a live process or fails to connect, which keeps
        # "refused" (nothing sent) apart from "unknown" (sent, never answered).
        limits = httpx.Limits(max_connections=self.concurrency * 2, max_keepalive_connections=0)
        timeout = httpx.Timeout(self.http_timeout, connect=2.0, pool=self.http_timeout)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            ctx = WorkloadContext(client, self.urls, staff_headers(), self.ledger)
            numbers = iter(range(self.ops))
            self.started = self._next_due = time.monotonic()
            await asyncio.gather(*(self._worker(ctx, numbers) for _ in range(self.concurrency)))
            self.finished = time.monotonic()
        return self.ledger

    async def _worker(self, ctx: WorkloadContext, numbers) -> None:
        for no in numbers:
            while self.hold():
                await asyncio.sleep(0.2)
            due = self._next_due = max(self._next_due, time.monotonic())
            self._next_due += 1 / self.rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            rng = random.Random(self.seed * 1_000_003 + no)  # the same operation for the same seed
            kinds = [k for k in self.kinds if k.ready(self.ledger)]
            kind = rng.choices(kinds, weights=[k.weight for k in kinds])[0]
            op = Operation(no=no, kind=kind.name, marker=self.marker(no))
            began = time.monotonic()
            await kind.perform(ctx, op, rng)
            op.seconds = time.monotonic() - began
            self.ledger.add(op)
