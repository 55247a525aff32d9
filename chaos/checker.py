"""Compares what the operations expect with what the system holds, and says what went wrong."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from .deliveries import InjectionLog
from .observe import Observation
from .workload import ACCEPTED, KIND_BY_NAME, KINDS, UNKNOWN, Ledger, family


@dataclass
class Report:
    seed: int
    ops: int
    workload_seconds: float
    operations: dict
    operations_by_kind: dict
    faults: dict
    injected: dict
    expected_effects: int = 0
    observed_effects: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    lost_by: dict = field(default_factory=dict)
    duplicated_by: dict = field(default_factory=dict)
    unexpected_by: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)
    secondary_effects: dict = field(default_factory=dict)  # effects of known people no operation models
    not_accepted: dict = field(default_factory=dict)  # why operations were refused or left unknown
    mails_received: int = 0
    mail_resends: int = 0
    deliveries_not_sent: int = 0
    mails_missing: int = 0
    pending_never_processed: int = 0
    pending_by_group: dict = field(default_factory=dict)
    dead_lettered: int = 0
    dead_lettered_real_events: int = 0
    bad_entries: int = 0
    bad_entries_not_dead_lettered: int = 0
    unknown_types_not_dead_lettered: int = 0
    poison_injected: int = 0
    poison_dead_lettered: int = 0
    max_deliveries: int = 0
    converged: bool = False
    converge_seconds: float | None = None
    converge_limit: float = 60.0
    faults_seconds: float = 0.0  # from the first operation until the faults were over
    held_back_seconds: float = 0.0  # the workload waited this long for the services to catch up
    converge_after_faults: float | None = None  # the same convergence, counted from the end of the faults
    settled_after: dict = field(default_factory=dict)  # seconds into the drain each condition last became true
    fault_errors: list = field(default_factory=list)
    workdir: str = ""

    def problems(self) -> list[str]:
        out = []
        for name in ("lost", "duplicated", "unexpected", "mails_missing", "pending_never_processed", "dead_lettered_real_events",
                     "bad_entries_not_dead_lettered", "unknown_types_not_dead_lettered"):
            if getattr(self, name):
                out.append(f"{name} = {getattr(self, name)}")
        if self.poison_dead_lettered != self.poison_injected:
            out.append(f"poison dead-lettered {self.poison_dead_lettered} of {self.poison_injected}")
        if not self.converged:
            out.append("did not converge")
        elif self.converge_after_faults is not None and self.converge_after_faults > self.converge_limit:
            out.append(f"converged {self.converge_after_faults:.1f}s after the faults > {self.converge_limit:.0f}s")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        o = self.operations
        f = self.faults
        lines = [
            f"chaos run  seed={self.seed}  ops={self.ops}  workload={self.workload_seconds:.0f}s  "
            f"faults during the first {self.faults_seconds:.0f}s  held back {self.held_back_seconds:.0f}s",
            f"operations   attempted={o['attempted']} accepted={o['accepted']} refused={o['refused']} "
            f"unknown={o['unknown']} (recorded {o['unknown_recorded']}, not recorded {o['unknown_not_recorded']}) "
            f"skipped={o['skipped']}",
            f"by kind      {self.operations_by_kind}",
            f"faults       kills={f['kills_by_service']} (at fault points: {f['fault_point_kills']} of armed {f['armed']})",
            f"             sigstops={f['stops']} crashes={f['crashes']} redis_restarts={f['redis_restarts']} "
            f"network_cuts={f['network_cuts']} network_delays={f['network_delays']}",
            f"injected     {self.injected}",
            f"effects      expected={self.expected_effects} observed={self.observed_effects}",
            f"LOST         {self.lost}  {self.lost_by or ''}",
            f"DUPLICATED   {self.duplicated}  {self.duplicated_by or ''}",
            f"UNEXPECTED   {self.unexpected}  {self.unexpected_by or ''}",
            f"secondary    {self.secondary_effects}",
            f"not accepted {self.not_accepted}",
            f"mail         received={self.mails_received} resends(same Message-ID)={self.mail_resends} "
            f"failed={self.deliveries_not_sent} sent but not received={self.mails_missing}",
            f"pending never processed  {self.pending_never_processed}",
            f"dead-lettered {self.dead_lettered}: real events={self.dead_lettered_real_events}, "
            f"bad entries not dead-lettered={self.bad_entries_not_dead_lettered} of {self.bad_entries}, "
            f"unknown types not dead-lettered={self.unknown_types_not_dead_lettered}, "
            f"poison dead-lettered after >{self.max_deliveries} deliveries={self.poison_dead_lettered} of {self.poison_injected}",
            "converged    " + (f"in {self.converge_seconds:.1f}s after the workload ended, "
                                f"{self.converge_after_faults:.1f}s after the faults" if self.converged else "NO")
            + f"  (settled after: {self.settled_after})",
        ]
        if self.fault_errors:
            lines.append(f"faults not carried out: {self.fault_errors}")
        for what, sample in self.samples.items():
            if sample:
                lines.append(f"  {what}: {sample}")
        problems = self.problems()
        lines.append("RESULT       " + ("clean" if not problems else "; ".join(problems)))
        return "\n".join(lines)


def resolve_unknown(ledger: Ledger, obs: Observation) -> None:
    """An operation sent but never answered counts as done if a store holds its marker, else as not done."""
    for op in ledger.operations:
        if op.status == UNKNOWN:
            KIND_BY_NAME[op.kind].resolve(op, obs)


def expected_effects(ledger: Ledger) -> Counter:
    expected: Counter = Counter()
    for op in ledger.operations:
        if op.status == ACCEPTED or op.resolved == "recorded":
            expected.update(KIND_BY_NAME[op.kind].expected(op))
    return expected


def known_people(ledger: Ledger) -> set[str]:
    return {op.refs["person_ref"] for op in ledger.operations
            if (op.status == ACCEPTED or op.resolved == "recorded") and op.refs.get("person_ref")}


def compare(expected: Counter, obs: Observation, ledger: Ledger, report: Report, sample_size: int = 8) -> None:
    """Modelled effects must match exactly; any other effect must concern someone the workload
    created, or no one ("-", e.g. an alert about a failed delivery), else it is unexpected; and no
    store may record the same cause twice (else duplicated)."""
    observed = obs.effects
    modelled = set().union(*(k.families for k in KINDS))
    people = known_people(ledger) | {op.marker for op in ledger.operations}
    lost, dup, extra, secondary = Counter(), Counter(), Counter(), Counter()
    samples: dict[str, list] = {"lost": [], "duplicated": [], "unexpected": []}
    for effect, n in expected.items():
        m = observed.get(effect, 0)
        where = ".".join(effect[:2])
        if m < n:
            lost[where] += n - m
            samples["lost"].append(effect)
        elif m > n:
            dup[where] += m - n
            samples["duplicated"].append(effect)
    for effect, m in observed.items():
        if effect in expected:
            continue
        if family(effect) in modelled or (effect[2] not in people and effect[2] != "-"):
            extra[".".join(effect[:2])] += m
            samples["unexpected"].append(effect)
        else:
            secondary["/".join(family(effect))] += m
    for where, n in obs.repeated_causes.items():
        dup[where + " (same cause twice)"] += n
    report.expected_effects = sum(expected.values())
    report.observed_effects = sum(observed.values())
    report.lost, report.duplicated, report.unexpected = sum(lost.values()), sum(dup.values()), sum(extra.values())
    report.lost_by, report.duplicated_by, report.unexpected_by = dict(lost), dict(dup), dict(extra)
    report.secondary_effects = dict(secondary)
    report.samples = {k: ["/".join(e) for e in v[:sample_size]] for k, v in samples.items()}


def check_dead_letters(injected: InjectionLog, obs: Observation, report: Report, max_deliveries: int) -> None:
    by_origin: dict[tuple[str, str], list[dict]] = {}
    for letter in obs.dead_letters:
        by_origin.setdefault((letter.get("origin_stream", ""), letter.get("origin_id", "")), []).append(letter)
    report.dead_lettered = len(obs.dead_letters)
    report.max_deliveries = max_deliveries
    injected_origins = set()
    missing = unknown_missing = 0
    poison = poisoned_ok = 0
    for entry in injected.bad:
        origin = (entry.stream, entry.entry_id)
        injected_origins.add(origin)
        letters = by_origin.get(origin, [])
        groups = {letter.get("group") for letter in letters}
        if entry.kind == "unknown_type":
            unknown_missing += len(entry.must_dead_letter - groups)
        elif entry.must_dead_letter:
            missing += len(entry.must_dead_letter - groups)
        elif entry.any_of and not groups & entry.any_of:
            missing += 1
        if entry.kind == "poison":
            poison += 1
            if letters and all(int(letter.get("deliveries", 0)) > max_deliveries for letter in letters):
                poisoned_ok += 1
    report.bad_entries = sum(1 for e in injected.bad if e.kind != "poison")
    report.bad_entries_not_dead_lettered = missing
    report.unknown_types_not_dead_lettered = unknown_missing
    report.poison_injected, report.poison_dead_lettered = poison, poisoned_ok
    real = [letter for origin, letters in by_origin.items() if origin not in injected_origins for letter in letters]
    report.dead_lettered_real_events = len(real)
    report.samples["dead_lettered_real_events"] = [
        f"{d.get('group')}@{d.get('origin_stream')} {d.get('event_type')} {d.get('reason')}" for d in real[:8]]
