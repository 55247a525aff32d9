"""The scenarios of issue 9. Each returns its figures (and the raw samples the plot needs)."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import redis.asyncio as aioredis

from shared.auth import DEV_SECRET, Role, TokenSigner
from shared.events import dead_letter_stream, stream_name
from shared.testing.stack import SERVICES, ServiceProcess, Stack

from .baseline import PostgresTable, SqliteTable, run_baseline
from .events import HANDLER_LOADS, follow_group, preload, request_assessed
from .http_client import Client
from shared.testing.redis_server import free_port

from .lab import ROOT, Lab, cpu_s, rss_mb, wait_healthy
from .sizes import Sizes
from .stats import latency_summary, ratio, slope

# A call for help as staff record it: an adult excluded from home, so intake decides to accommodate
# and housing admits or waitlists, and notify mails the social coordinator. Fictional data.
REQUEST_BODY = {
    "name": "Bench Person",
    "date_of_birth": "2004-03-14",
    "phone": "+32 470 00 00 00",
    "email": "bench.person@example.org",
    "language": "en",
    "channel": "phone",
    "situation": "excluded",
    "urgency": "immediate",
    "needs": ["accommodation", "legal"],
    "notes": "benchmark request",
}


def staff_headers() -> dict[str, str]:
    """A signed staff token, as intake issues at sign-in (the stack runs with the development secret)."""
    return {"Authorization": f"Bearer {TokenSigner(DEV_SECRET).issue('bench', list(Role))}"}


def _alive(proc) -> bool:
    return proc.process is not None and proc.process.poll() is None


def spawn(stack: Stack, names=SERVICES) -> list[ServiceProcess]:
    """Start the named services at once, as `make run` does."""
    procs = [stack.services.get(name) or stack.add(name) for name in names]
    for proc in procs:
        proc.start()
    return procs


# --- baseline ---------------------------------------------------------------------------------

async def baseline(lab: Lab, sizes: Sizes) -> tuple[dict, list[float]]:
    if lab.postgres_url:
        table = PostgresTable(await lab.new_database("baseline"))
    else:
        table = SqliteTable(lab.workdir / "baseline.db")
    try:
        events = [request_assessed() for _ in range(sizes.baseline_events)]
        figures, hops = await asyncio.to_thread(run_baseline, lab.redis.url, "bench-baseline", table, events,
                                                sizes.hop_samples)
    finally:
        table.close()
    figures["store"] = lab.store
    return figures, hops


# --- a service draining a backlog -------------------------------------------------------------

def housing_seed(path: Path, places: int, per_flat: int = 20) -> Path:
    """An inventory with `places` emergency places, so that every request is an admission."""
    flats = []
    for f in range(0, places, per_flat):
        flats.append({
            "code": f"F-BENCH-{f // per_flat:05d}", "address": f"Rue du Banc {f // per_flat}, 1000 Bruxelles",
            "places": [{"place_ref": f"PL-B{p:06d}", "kind": "emergency"} for p in range(f, min(f + per_flat, places))],
        })
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"flats": flats}))
    return path


async def drain(lab: Lab, service: str, events: int, *, label: str, stopped_first: bool, timeout: float) -> dict:
    """Queue `events` for `service`, start it, and follow its consumer group until all are acknowledged.

    stopped_first: the service ran once (its group exists) and was stopped before the backlog
    was queued; otherwise the backlog is there before its first start (the group starts at 0)."""
    producer, make_event = HANDLER_LOADS[service]
    extra_env = {}
    if service == "housing":
        seed = housing_seed(lab.workdir / f"{label}-places.json", events + 100)
        extra_env["HOUSING_SEED_FILE"] = str(seed)
    stack = await lab.new_stack(label, extra_env)
    try:
        proc = stack.add(service)
        if stopped_first:
            proc.start()
            await wait_healthy([proc])
            proc.stop()
        stream = stream_name(stack.namespace, producer)
        entry_ids = await preload(lab.redis.url, stream, [make_event() for _ in range(events)])
        mails_before = lab.mail.count
        started = time.monotonic()
        proc.start()
        progress = await follow_group(lab.redis.url, stream, service, entry_ids, started=started,
                                      timeout=timeout, is_alive=lambda: _alive(proc))
        figures = {
            "events": events,
            "completed": progress.done is not None,
            "acknowledged": progress.acknowledged,
            "per_s": progress.per_second,
            "first_delivery_after_start_s": (progress.first_delivery - started) if progress.first_delivery else None,
            "drain_s": (progress.done - started) if progress.done else None,
        }
        if progress.done is not None:
            figures["outbox_published_after_s"] = await _outbox_published_after(proc, progress.done)
        figures["dead_lettered"] = await _stream_length(lab.redis.url, dead_letter_stream(stack.namespace))
        figures["rss_mb"] = rss_mb(proc.process.pid)
        lab.mail.poll()
        figures["mails_received"] = lab.mail.count - mails_before
        if service == "housing":
            figures["work"] = f"admissions into a seed of {events + 100} emergency places (no waiting list)"
        return figures
    finally:
        lab.stop_stack(stack)


async def _outbox_published_after(proc: ServiceProcess, done: float, timeout: float = 60.0) -> float | None:
    """Seconds after the last acknowledgement until the service's outbox was empty."""
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() - done < timeout:
            try:
                stats = (await http.get(f"{proc.url}/health/stats")).json()
                if stats.get("outbox_backlog") == 0:
                    return time.monotonic() - done
            except (httpx.HTTPError, ValueError):
                pass
            await asyncio.sleep(0.05)
    return None


async def _stream_length(redis_url: str, stream: str) -> int:
    client = aioredis.from_url(redis_url)
    try:
        return int(await client.xlen(stream))
    finally:
        await client.aclose()


async def handler_throughput(lab: Lab, sizes: Sizes, baseline_per_s: float | None) -> dict:
    results = {}
    for service in ("housing", "referrals", "notify", "intake"):
        figures = await drain(lab, service, sizes.handler_events, label=f"handler-{service}", stopped_first=False,
                              timeout=sizes.handler_timeout)
        figures["ratio_to_baseline"] = ratio(figures["per_s"], baseline_per_s)
        results[service] = figures
    return results


async def backlog_drain(lab: Lab, sizes: Sizes, baseline_per_s: float | None) -> dict:
    figures = await drain(lab, "notify", sizes.drain_events, label="backlog-drain", stopped_first=True,
                          timeout=sizes.drain_timeout)
    figures["service"] = "notify"
    figures["ratio_to_baseline"] = ratio(figures["per_s"], baseline_per_s)
    return figures


# --- intake's API beside a bare validating endpoint -------------------------------------------

@dataclass
class BareApp:
    """bench.bare_app as a process; shaped like ServiceProcess for wait_healthy."""

    port: int
    log_path: Path
    name: str = "bare"
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "bench.bare_app", "--port", str(self.port)],
                                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def closed_loop(url: str, headers: dict[str, str], sizes: Sizes) -> tuple[dict, list[float]]:
    """`api_concurrency` clients posting the request body back to back. Requests answered within
    the measured window count (the first seconds warm up), with the latency each one took."""
    parts = urlsplit(url)
    client = Client(parts.hostname, parts.port, parts.path, REQUEST_BODY, headers, max_connections=sizes.api_concurrency)
    measure_from = time.monotonic() + sizes.api_warmup_seconds
    stop_at = measure_from + sizes.api_seconds
    latencies: list[float] = []
    failures: dict[str, int] = {}  # HTTP status (0: no answer) -> count

    async def worker() -> None:
        while (started := time.monotonic()) < stop_at:
            try:
                status, _ = await client.post()
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                status = 0
            ended = time.monotonic()
            if measure_from <= ended <= stop_at:
                if status == 201:
                    latencies.append(ended - started)
                else:
                    failures[str(status)] = failures.get(str(status), 0) + 1

    await asyncio.gather(*(worker() for _ in range(sizes.api_concurrency)))
    client.close()
    return {"requests_per_s": len(latencies) / sizes.api_seconds, "failures": sum(failures.values()),
            "failures_by_status": failures, "latency": latency_summary(latencies)}, latencies


async def intake_api(lab: Lab, sizes: Sizes) -> tuple[dict, dict]:
    bare = BareApp(free_port(), lab.workdir / "logs" / "bare.log")
    started = time.monotonic()
    bare.start()
    try:
        healthy = await wait_healthy([bare])
        await asyncio.sleep(1)
        bare_figures = {"startup_s": healthy["bare"] - started, "rss_mb_idle": rss_mb(bare.process.pid)}
        load, bare_samples = await closed_loop(f"{bare.url}/api/requests", {}, sizes)
        bare_figures.update(load, rss_mb_after_load=rss_mb(bare.process.pid))
    finally:
        bare.stop()

    stack = await lab.new_stack("intake-api")
    try:
        proc = spawn(stack, ["intake"])[0]
        await wait_healthy([proc])
        intake_figures, intake_samples = await closed_loop(f"{proc.url}/api/requests", staff_headers(), sizes)
    finally:
        lab.stop_stack(stack)
    return {
        "concurrency": sizes.api_concurrency,
        "bare": bare_figures,
        "intake": intake_figures,
        "ratio_requests_per_s": ratio(intake_figures["requests_per_s"], bare_figures["requests_per_s"]),
        "ratio_p50_latency": ratio(intake_figures["latency"].get("p50_ms"), bare_figures["latency"].get("p50_ms")),
    }, {"bare": bare_samples, "intake": intake_samples}


# --- the whole stack: start-up, footprint, end-to-end latency ---------------------------------

async def cold_start(lab: Lab, label: str) -> tuple[Stack, float]:
    stack = await lab.new_stack(label)
    started = time.monotonic()
    procs = spawn(stack)
    healthy = await wait_healthy(procs)
    return stack, max(healthy.values()) - started


# A stack this far behind will not catch up within the run: stop sending rather than queue
# thousands of requests that would only take minutes to drain.
MAX_UNANSWERED = 1500


async def steady_rate(lab: Lab, intake: ServiceProcess, rate: int, seconds: float, settle: float,
                      earlier: set[str]) -> tuple[dict, dict]:
    """Post `rate` requests per second for `seconds`, on a fixed schedule whatever the answers
    take; latency runs from each request's scheduled time to its mail's arrival at the sink.
    `earlier`: requests of the rates before, whose mails may still be on their way."""
    arrivals = lab.mail.poll()
    backlog_before = sum(1 for ref in earlier if ref not in arrivals)
    client = Client("127.0.0.1", intake.port, "/api/requests", REQUEST_BODY, staff_headers())
    total = int(rate * seconds)
    scheduled: dict[str, float] = {}  # person_ref -> when the request was due
    answers: list[float] = []
    failures: dict[str, int] = {}  # HTTP status (0: no answer) -> count
    late = 0.0
    sent = 0
    backlog: list[tuple[float, int]] = []  # (seconds into the window, requests sent but not yet mailed)
    start = time.monotonic() + 0.2

    async def one(due: float) -> None:
        try:
            status, body = await client.post()
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            status, body = 0, b""
        if status == 201:
            scheduled[orjson.loads(body)["person_ref"]] = due
            answers.append(time.monotonic() - due)
        else:
            failures[str(status)] = failures.get(str(status), 0) + 1

    def mailed() -> int:
        arrivals = lab.mail.poll()
        return sum(1 for ref in scheduled if ref in arrivals)

    async def watch_backlog() -> None:
        while True:
            await asyncio.sleep(0.25)
            backlog.append((time.monotonic() - start, sent - mailed()))

    watcher = asyncio.create_task(watch_backlog())
    tasks = []
    overloaded = False
    for i in range(total):
        if sent - len(scheduled) - sum(failures.values()) > MAX_UNANSWERED:
            overloaded = True
            break
        due = start + i / rate
        if (wait := due - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        late = max(late, time.monotonic() - due)
        tasks.append(asyncio.create_task(one(due)))
        sent += 1
    sending_s = time.monotonic() - start
    await asyncio.gather(*tasks)
    answered_by = time.monotonic() - start
    deadline = time.monotonic() + settle
    while mailed() < len(scheduled) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    watcher.cancel()
    client.close()

    arrivals = lab.mail.poll()
    latencies = [arrivals[ref] - due for ref, due in scheduled.items() if ref in arrivals]
    last_mail = max((arrivals[ref] for ref in scheduled if ref in arrivals), default=start)
    # Growth while requests were still being sent at the full rate, over the second half of that time.
    window = [(t, n) for t, n in backlog if sending_s / 2 <= t <= sending_s]
    figures = {
        "rate": rate,
        "seconds": seconds,
        "requests": sent,
        "stopped_early_overloaded": overloaded,
        "sending_s": sending_s,
        "backlog_before": backlog_before,
        "failures": sum(failures.values()),
        "failures_by_status": failures,
        "mails": len(latencies),
        "missing_mails": len(scheduled) - len(latencies),
        "latency": latency_summary(latencies),
        "http_latency": latency_summary(answers),
        "generator_late_max_ms": late * 1000,
        "all_answered_after_s": answered_by,
        "backlog_at_end": next((n for t, n in reversed(backlog) if t <= sending_s), None),
        "backlog_growth_per_s": slope(window),
        "last_mail_after_window_s": max(0.0, last_mail - (start + seconds)),
    }
    return figures, {"latencies": latencies, "backlog": backlog, "requests": set(scheduled)}


async def whole_stack(lab: Lab, sizes: Sizes, hop: dict | None, bare: dict | None) -> tuple[dict, dict, dict]:
    """Cold starts (footprint), then the end-to-end rates on the last stack started, then its memory."""
    startups = []
    for run in range(sizes.startup_runs - 1):
        stack, seconds = await cold_start(lab, f"cold-start-{run + 1}")
        startups.append(seconds)
        lab.stop_stack(stack)
    stack, seconds = await cold_start(lab, "end-to-end")
    startups.append(seconds)
    try:
        await asyncio.sleep(1)
        cpu_before = {name: cpu_s(stack.services[name].process.pid) for name in SERVICES}
        await asyncio.sleep(sizes.idle_seconds)
        # What the stack costs a machine with nothing to do: polls, checkpoints, watchdogs.
        idle_cpu = {name: (cpu_s(stack.services[name].process.pid) - cpu_before[name]) * 1000 / sizes.idle_seconds
                    for name in SERVICES}
        idle = {name: rss_mb(stack.services[name].process.pid) for name in SERVICES}
        rates, samples = {}, {}
        earlier: set[str] = set()
        for rate in sizes.e2e_rates:
            cpu_before = {name: cpu_s(stack.services[name].process.pid) for name in SERVICES}
            figures, samples[str(rate)] = await steady_rate(lab, stack.services["intake"], rate, sizes.e2e_seconds,
                                                            sizes.e2e_settle_seconds, earlier)
            # Where a request's cost lands: from its first post until its mails arrived (or settling gave up).
            figures["cpu_ms_per_request"] = {
                name: (cpu_s(stack.services[name].process.pid) - cpu_before[name]) * 1000 / max(figures["requests"], 1)
                for name in SERVICES}
            earlier |= samples[str(rate)].pop("requests")
            for p in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
                figures["latency"][f"{p}_ratio_to_hop"] = ratio(figures["latency"].get(p), (hop or {}).get(p))
            rates[str(rate)] = figures
        after = {name: rss_mb(stack.services[name].process.pid) for name in SERVICES}
    finally:
        lab.stop_stack(stack)

    bare = bare or {}
    startup = statistics.median(startups)
    footprint = {
        "startup_s": startup,
        "startup_runs_s": startups,
        "bare_startup_s": bare.get("startup_s"),
        "startup_ratio_to_bare": ratio(startup, bare.get("startup_s")),
        "rss_mb": {
            name: {"idle": idle[name], "after_load": after[name],
                   "idle_ratio_to_bare": ratio(idle[name], bare.get("rss_mb_idle")),
                   "after_load_ratio_to_bare": ratio(after[name], bare.get("rss_mb_after_load"))}
            for name in SERVICES
        },
        "bare_rss_mb": {"idle": bare.get("rss_mb_idle"), "after_load": bare.get("rss_mb_after_load")},
        "idle_cpu_ms_per_s": idle_cpu,
    }
    end_to_end = {
        "rates": rates,
        "inventory": "the default seed (services/housing/seed/places.json), as `make run` starts: once its "
                     "emergency places are taken, requests go to the waiting list",
    }
    return end_to_end, footprint, samples
