"""`refuge`: the operator's command. Streams and their lag, dead letters, backup and restore,
the AsyncAPI document. Each command prints with rich, or JSON with --json; errors go to stderr
with a non-zero exit code (1 refused or not found, 2 bad usage, 3 Redis or a store unreachable)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shared.ops.common import EXIT_FAILED, OpsError

# Each command imports what it needs (FastStream, SQLAlchemy...) when it runs, so the command starts fast.
DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"

app = typer.Typer(name="refuge", help="Operate the refuge's services: streams, dead letters, backups, docs.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
dead_letters_app = typer.Typer(help="List, show, replay or discard the entries of the dead-letter stream.",
                               no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RedisUrl = Annotated[str, typer.Option(
    "--redis-url", envvar="REFUGE_REDIS_URL", help="Redis holding the streams.", show_envvar=True)]
Namespace = Annotated[str, typer.Option(
    "--namespace", envvar="REFUGE_NAMESPACE", help="Prefix of every stream name.", show_envvar=True)]
Timeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer from Redis or a store.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def main() -> None:
    app()


def run(coro_factory: Callable[[], Any]) -> Any:
    """Run one command's coroutine; an OpsError becomes a red message and its exit code."""
    try:
        return asyncio.run(coro_factory())
    except OpsError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None


# --- streams --------------------------------------------------------------------------


@app.command()
def streams(redis_url: RedisUrl = DEFAULT_REDIS, namespace: Namespace = "refuge", timeout: Timeout = 5.0,
            as_json: AsJson = False) -> None:
    """Each consumer group's lag and pending entries, per stream, and the dead-letter count."""
    from shared.ops.streams import streams_report

    report = run(lambda: streams_report(redis_url, namespace, timeout))
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    out.print(f"Streams of namespace [bold]{escape(namespace)}[/] (Redis {escape(report.redis_version)})")
    for stream in report.streams:
        length = f"{stream.length} entries" if stream.exists else "absent"
        table = Table(title=f"{escape(stream.stream)} ({length})", title_justify="left")
        for column in ("group", "read", "lag", "pending", "oldest pending idle", "consumers (pending)"):
            table.add_column(column, justify="right" if column in ("read", "lag", "pending") else "left",
                             overflow="fold")
        for group in stream.groups:
            name = escape(group.name) + ("" if group.expected else " [yellow](not in SUBSCRIPTIONS)[/]")
            if not group.exists:
                table.add_row(name, "", "", "", "[yellow]no group yet[/]", "")
                continue
            lag = "?" if group.lag is None else str(group.lag) + ("*" if group.lag_source == "computed" else "")
            lag = f"[yellow]{lag}[/]" if group.lag else lag
            pending = f"[yellow]{group.pending}[/]" if group.pending else "0"
            idle = _duration(group.oldest_pending_idle_ms) if group.oldest_pending_idle_ms is not None else ""
            consumers = ", ".join(f"{escape(c.name)} ({c.pending})" for c in group.consumers) or "[dim]none[/]"
            table.add_row(name, "" if group.entries_read is None else str(group.entries_read), lag, pending, idle,
                          consumers)
        out.print(table)
    if any(g.lag_source == "computed" for s in report.streams for g in s.groups):
        out.print("[dim]* lag counted from the entries after the group's last delivered id (Redis < 7 or deletions)[/]")
    colour = "red" if report.dead_letters else "green"
    out.print(f"Dead letters in {escape(report.dead_letter_stream)}: [{colour}]{report.dead_letters}[/]")


def _duration(ms: int) -> str:
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --- dead letters ---------------------------------------------------------------------


@dead_letters_app.command("list")
def dead_letters_list(redis_url: RedisUrl = DEFAULT_REDIS, namespace: Namespace = "refuge", timeout: Timeout = 5.0,
                      limit: Annotated[int | None, typer.Option(min=1, help="Show at most this many.")] = None,
                      as_json: AsJson = False) -> None:
    """Every dead letter: origin, ids, type, reason, deliveries."""
    from shared.ops.dead_letters import DeadLetters

    async def go():
        async with DeadLetters(redis_url, namespace, timeout) as letters:
            return await letters.list(limit)

    letters = run(go)
    if as_json:
        typer.echo(json.dumps([letter.summary() for letter in letters], indent=2))
        return
    if not letters:
        out.print(f"No dead letters in {escape(namespace)}.dead-letters.")
        return
    table = Table(title=f"Dead letters of namespace {escape(namespace)}")
    for column in ("id", "origin (stream, id, group)", "type, event id", "deliveries", "reason", "body"):
        table.add_column(column, overflow="fold", justify="right" if column == "deliveries" else "left")
    for letter in letters:
        table.add_row(letter.id, f"{escape(letter.origin_stream)}\n{letter.origin_id}\n{escape(letter.group)}",
                      f"{escape(letter.event_type) or '[dim]?[/]'}\n{letter.event_id or '[dim]?[/]'}",
                      str(letter.deliveries), escape(letter.reason), letter.body_kind())
    out.print(table)


@dead_letters_app.command("show")
def dead_letters_show(entry_id: Annotated[str, typer.Argument(metavar="ID", help="Entry id in the dead-letter stream.")],
                      redis_url: RedisUrl = DEFAULT_REDIS, namespace: Namespace = "refuge", timeout: Timeout = 5.0,
                      as_json: AsJson = False) -> None:
    """One dead letter with its payload's keys and types; only references and codes are shown as values."""
    from shared.ops.dead_letters import DeadLetters

    async def go():
        async with DeadLetters(redis_url, namespace, timeout) as letters:
            return await letters.get(entry_id)

    letter = run(go)
    if as_json:
        typer.echo(json.dumps(letter.summary(), indent=2))
        return
    _print_letter(letter)


def _print_letter(letter) -> None:
    from shared.ops.dead_letters import HIDDEN

    details = Table.grid(padding=(0, 2))
    details.add_column(style="bold")
    details.add_column()
    for label, value in (
        ("id", letter.id), ("origin", f"{letter.origin_stream} {letter.origin_id}"), ("group", letter.group),
        ("event id", letter.event_id or "?"), ("type", letter.event_type or "?"), ("deliveries", str(letter.deliveries)),
        ("reason", letter.reason), ("body", letter.body_kind()),
    ):
        details.add_row(label, escape(value))
    out.print(details)
    fields = letter.described_body()
    if fields:
        table = Table(title="body (values other than references and codes are hidden)")
        for column in ("field", "type", "value"):
            table.add_column(column, overflow="fold")
        for f in fields:
            table.add_row(escape(f.path), f.kind, "[dim]hidden[/]" if f.value == HIDDEN else escape(f.value))
        out.print(table)


def _select(letters, entry_id: str | None, every: bool):
    async def pick() -> list:
        if every and entry_id:
            raise OpsError("give an ID or --all, not both", 2)
        if every:
            return await letters.list()
        if not entry_id:
            raise OpsError("give the ID of a dead letter, or --all", 2)
        return [await letters.get(entry_id)]

    return pick()


@dead_letters_app.command("replay")
def dead_letters_replay(
    entry_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="Entry id in the dead-letter stream.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS, namespace: Namespace = "refuge", timeout: Timeout = 5.0,
) -> None:
    """Publish a dead letter's event again to its origin stream, then delete the dead letter.

    Every group reading that stream receives it again; groups that handled it already drop it in
    their inbox. Only bodies that are JSON objects can be replayed.
    """
    from shared.ops.dead_letters import DeadLetters

    async def go():
        async with DeadLetters(redis_url, namespace, timeout) as letters:
            chosen = await _select(letters, entry_id, every)
            return chosen, await letters.replay(chosen)

    chosen, (replayed, refused) = run(go)
    for letter in replayed:
        out.print(f"replayed {letter.id} ({escape(letter.event_type) or '?'} {letter.event_id or '?'}) "
                  f"to {escape(letter.origin_stream)}")
    for letter, reason in refused:
        err.print(f"[red]not replayed[/] {letter.id}: {escape(reason)}")
    if not chosen:
        out.print("No dead letters to replay.")
    if refused:
        raise typer.Exit(EXIT_FAILED)


@dead_letters_app.command("discard")
def dead_letters_discard(
    entry_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="Entry id in the dead-letter stream.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Discard every dead letter.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    redis_url: RedisUrl = DEFAULT_REDIS, namespace: Namespace = "refuge", timeout: Timeout = 5.0,
) -> None:
    """Delete dead letters for good (asks first unless --yes)."""
    from shared.ops.dead_letters import DeadLetters

    async def pick():
        async with DeadLetters(redis_url, namespace, timeout) as letters:
            return await _select(letters, entry_id, every)

    chosen = run(pick)
    if not chosen:
        out.print("No dead letters to discard.")
        return
    if not yes and not typer.confirm(f"Discard {len(chosen)} dead letter(s) for good?", default=False):
        err.print("Nothing discarded.")
        raise typer.Exit(EXIT_FAILED)

    async def go():
        async with DeadLetters(redis_url, namespace, timeout) as letters:
            return await letters.discard(chosen)

    deleted = run(go)
    out.print(f"discarded {deleted} dead letter(s): {', '.join(letter.id for letter in chosen)}")


# --- backup and restore ---------------------------------------------------------------


def _store_option(service: str):
    env = f"{service.upper()}_DATABASE_URL"
    return typer.Option(f"--{service}-database-url", envvar=env, show_envvar=True,
                        help=f"Store of {service} (sqlite+aiosqlite:///… or postgresql://…).")


IntakeDb = Annotated[str, _store_option("intake")]
HousingDb = Annotated[str, _store_option("housing")]
ReferralsDb = Annotated[str, _store_option("referrals")]
NotifyDb = Annotated[str, _store_option("notify")]
IntakeKeysDb = Annotated[str, typer.Option(
    "--intake-keys-database-url", envvar="INTAKE_KEYS_DATABASE_URL", show_envvar=True,
    help="Store of intake's per-person data keys: back it up with the data it unlocks.")]


class RichProgress:
    def __init__(self, progress: Progress):
        self.progress = progress

    def start(self, description: str, total: int | None) -> Callable[[int], None]:
        task = self.progress.add_task(escape(description), total=total or 0)
        if not total:
            self.progress.update(task, total=1, completed=1)
        return lambda n: self.progress.advance(task, n)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


@app.command()
def backup(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="New or empty directory for the backup.")],
    redis_url: RedisUrl = DEFAULT_REDIS, namespace: Namespace = "refuge",
    intake_db: IntakeDb = "sqlite+aiosqlite:///./var/intake.db",
    housing_db: HousingDb = "sqlite+aiosqlite:///./var/housing.db",
    referrals_db: ReferralsDb = "sqlite+aiosqlite:///./var/referrals.db",
    notify_db: NotifyDb = "sqlite+aiosqlite:///./var/notify.db",
    intake_keys_db: IntakeKeysDb = "sqlite+aiosqlite:///./var/intake-keys.db",
    timeout: Timeout = 10.0,
) -> None:
    """Back up Redis (every key of the namespace) and then every service's store, consistently."""
    from shared.ops import backup as backups

    stores = {"intake": intake_db, "housing": housing_db, "referrals": referrals_db, "notify": notify_db,
              "intake_keys": intake_keys_db}
    with _progress() as progress:
        report = run(lambda: backups.backup(directory, redis_url=redis_url, namespace=namespace, stores=stores,
                                            timeout=timeout, progress=RichProgress(progress)))
    rows = sum(sum(t.values()) for t in report.rows.values())
    out.print(f"backed up {report.redis_keys} Redis key(s) at {report.redis_time.isoformat()} and {rows} row(s) "
              f"from {len(report.rows)} store(s) into {escape(str(directory))}")


@app.command()
def restore(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Directory written by `refuge backup`.")],
    redis_url: RedisUrl = DEFAULT_REDIS,
    intake_db: IntakeDb = "sqlite+aiosqlite:///./var/intake.db",
    housing_db: HousingDb = "sqlite+aiosqlite:///./var/housing.db",
    referrals_db: ReferralsDb = "sqlite+aiosqlite:///./var/referrals.db",
    notify_db: NotifyDb = "sqlite+aiosqlite:///./var/notify.db",
    intake_keys_db: IntakeKeysDb = "sqlite+aiosqlite:///./var/intake-keys.db",
    force: Annotated[bool, typer.Option("--force", help="Replace the rows and keys already there.")] = False,
    timeout: Timeout = 10.0,
) -> None:
    """Restore a backup into empty stores and a Redis without the namespace's keys (stop the services first).

    Missing tables are created from the schema in the backup. Events published after the Redis
    snapshot are marked unpublished so the outbox relays publish them again.
    """
    from shared.ops import backup as backups

    stores = {"intake": intake_db, "housing": housing_db, "referrals": referrals_db, "notify": notify_db,
              "intake_keys": intake_keys_db}
    with _progress() as progress:
        report = run(lambda: backups.restore(directory, redis_url=redis_url, stores=stores, force=force,
                                             timeout=timeout, progress=RichProgress(progress)))
    rows = sum(sum(t.values()) for t in report.rows.values())
    out.print(f"restored {report.redis_keys} Redis key(s) and {rows} row(s) into {len(report.rows)} store(s)")
    for service, count in report.republished.items():
        if count:
            out.print(f"  {service}: {count} outbox event(s) will be published again")
    for service, created in report.created_tables.items():
        if created:
            out.print(f"  {service}: created {len(created)} table(s) from the backup's schema")


# --- docs -----------------------------------------------------------------------------


@app.command()
def docs(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the document.")] = DOCUMENT,
    check: Annotated[bool, typer.Option("--check", help="Only check that the file is up to date.")] = False,
) -> None:
    """Write the AsyncAPI 3.0.0 document of every event contract (docs/asyncapi.json) and each
    service's OpenAPI document (docs/openapi/<service>.json)."""
    from shared.ops import asyncapi, openapi

    if check:
        current = output.read_text() if output.exists() else ""
        stale = openapi.stale()
        if current != asyncapi.render(asyncapi.build_document()):
            stale.insert(0, str(output))
        if stale:
            err.print(f"[red]stale: {escape(', '.join(stale))}:[/] run `make docs`")
            raise typer.Exit(EXIT_FAILED)
        out.print(f"{escape(str(output))} and docs/openapi/ are up to date")
        return
    changed = asyncapi.write(output)
    out.print(f"{'wrote' if changed else 'unchanged:'} {escape(str(output))}")
    for service in openapi.write():
        out.print(f"wrote docs/openapi/{service}.json")


# --- through the services' APIs ---------------------------------------------------------

places_app = typer.Typer(help="The inventory of places (through housing's API).", no_args_is_help=True)
directory_app = typer.Typer(help="The partner directory (through referrals' API), as HSDS JSON or CSV zip.",
                            no_args_is_help=True)
app.add_typer(places_app, name="places")
app.add_typer(directory_app, name="directory")
ApiTimeout = Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each answer of a service.")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def accounts(ctx: typer.Context) -> None:
    """Staff accounts: create NAME --role ROLE | set-password NAME | deactivate NAME | activate NAME | list."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "services.intake.accounts", *ctx.args])
    raise typer.Exit(result.returncode)


@places_app.command("load")
def places_load(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON: {flats: [{code, address, places: [{place_ref, kind}]}]}")],
                timeout: ApiTimeout = 10.0) -> None:
    """Add flats and places from a file; those already there are left as they are."""
    from shared.ops.service_api import call

    try:
        flats = json.loads(file.read_text())["flats"]
    except (ValueError, KeyError, TypeError) as exc:
        err.print(f"[red]error:[/] {escape(str(file))} is not a places file ({type(exc).__name__})")
        raise typer.Exit(EXIT_FAILED) from None
    known_flats = {f["code"] for f in _api_json(call, "housing", "GET", "/api/flats", timeout)}
    known_places = {p["place_ref"] for p in _api_json(call, "housing", "GET", "/api/places", timeout)}
    added = 0
    with _progress() as progress:
        task = progress.add_task("places", total=sum(len(f.get("places", [])) for f in flats))
        for flat in flats:
            if flat["code"] not in known_flats:
                _api(call, "housing", "POST", "/api/flats", timeout, json={"code": flat["code"], "address": flat["address"]})
            for place in flat.get("places", []):
                if place["place_ref"] not in known_places:
                    _api(call, "housing", "POST", "/api/places", timeout,
                         json={"flat_code": flat["code"], "kind": place["kind"], "place_ref": place["place_ref"]})
                    added += 1
                progress.advance(task)
    out.print(f"{added} place(s) added")


@directory_app.command("export")
def directory_export(out_file: Annotated[Path, typer.Argument(metavar="FILE", help="*.json (HSDS JSON) or *.zip (HSDS CSV)")],
                     timeout: ApiTimeout = 30.0) -> None:
    """Write the whole partner directory to a file."""
    from shared.ops.service_api import call

    path = "/api/directory/export.zip" if out_file.suffix == ".zip" else "/api/directory/export.json"
    response = _api(call, "referrals", "GET", path, timeout)
    out_file.write_bytes(response.content)
    out.print(f"wrote {out_file} ({len(response.content)} bytes)")


@directory_app.command("import")
def directory_import(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="*.json or *.zip as exported")],
                     replace: Annotated[bool, typer.Option("--replace", help="Also remove organisations missing from the file.")] = False,
                     timeout: ApiTimeout = 60.0) -> None:
    """Load a directory file (organisations are matched by id and updated)."""
    from shared.ops.service_api import call

    path = "/api/directory/import.zip" if file.suffix == ".zip" else "/api/directory/import"
    response = _api(call, "referrals", "POST", path, timeout, params={"replace": str(replace).lower()},
                    content=file.read_bytes(), headers={"content-type": "application/zip" if file.suffix == ".zip" else "application/json"})
    out.print(json.dumps(response.json(), indent=2))


@app.command()
def erase(person_ref: Annotated[str, typer.Argument(metavar="PERSON_REF")],
          reason: Annotated[str, typer.Option("--reason", help="Why (kept in intake, never sent anywhere).")],
          yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
          timeout: ApiTimeout = 10.0) -> None:
    """Erase a person everywhere (GDPR Art. 17): intake erases and asks every service to confirm."""
    from shared.ops.service_api import call

    if not yes and not typer.confirm(f"Erase {person_ref} in every service? This cannot be undone."):
        raise typer.Exit(EXIT_FAILED)
    response = _api(call, "intake", "POST", f"/api/case-files/{person_ref}/erasure", timeout, json={"reason": reason})
    out.print(json.dumps(response.json(), indent=2))


def _api(call, service: str, method: str, path: str, timeout: float, **kwargs):
    try:
        return call(service, method, path, timeout=timeout, **kwargs)
    except OpsError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None


def _api_json(call, service: str, method: str, path: str, timeout: float):
    return _api(call, service, method, path, timeout).json()


if __name__ == "__main__":
    main()
