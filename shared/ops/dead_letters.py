"""The dead-letter stream: read entries without exposing personal data, replay them to their
origin stream, or discard them.

Entries are written by `shared.messaging.consumer.EventConsumer._dead_letter` with the fields
origin_stream, origin_id, group, reason, deliveries, event_id, event_type and body (the decoded
JSON body, or the raw bytes of an unreadable entry).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from faststream.redis import RedisBroker

from shared.events import REGISTRY
from shared.events.streams import PRODUCERS, dead_letter_stream, stream_name

from .common import OpsError, redis_call, redis_client, text

REFERENCE = re.compile(r"^[A-Z]{1,2}-[0-9a-f]+$")
CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
ENTRY_ID = re.compile(r"^\d+-\d+$")
HIDDEN = "·"  # printed in place of a value that is not a reference or a code

# Envelope fields and what a printable value of each looks like.
_ENVELOPE = {
    "event_id": lambda v: isinstance(v, str) and bool(UUID.match(v) or REFERENCE.match(v)),
    "correlation_id": lambda v: isinstance(v, str) and bool(UUID.match(v) or REFERENCE.match(v)),
    "causation_id": lambda v: isinstance(v, str) and bool(UUID.match(v) or REFERENCE.match(v)),
    "type": lambda v: v in REGISTRY,
    "producer": lambda v: v in PRODUCERS,
    "schema_version": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1000,
    "occurred_at": lambda v: isinstance(v, str) and bool(TIMESTAMP.match(v)),
    "traceparent": lambda v: isinstance(v, str) and bool(TRACEPARENT.match(v)),
}


def _contract_fields() -> frozenset[str]:
    # Field names vetted by the contracts (tests/unit/test_contracts.py): only their values may be codes.
    return frozenset(name for contract in REGISTRY.values() for name in contract.model_fields)


@dataclass
class PayloadField:
    path: str
    kind: str
    value: str  # the value when it is a reference or a code, else HIDDEN


@dataclass
class DeadLetter:
    id: str
    origin_stream: str
    origin_id: str
    group: str
    reason: str
    deliveries: int
    event_id: str
    event_type: str
    body: bytes = field(repr=False)

    def envelope(self) -> dict[str, Any] | None:
        """The body as a JSON object, or None when it is not one (then it cannot be replayed)."""
        try:
            parsed = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def body_kind(self) -> str:
        if self.envelope() is not None:
            return "JSON object"
        try:
            return f"JSON {_kind(orjson.loads(self.body))}, not an object"
        except orjson.JSONDecodeError:
            return f"unreadable ({len(self.body)} bytes)"

    def described_body(self) -> list[PayloadField]:
        body = self.envelope()
        return describe(body) if body is not None else []

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id, "origin_stream": self.origin_stream, "origin_id": self.origin_id, "group": self.group,
            "event_id": self.event_id, "event_type": self.event_type, "reason": self.reason,
            "deliveries": self.deliveries, "body": self.body_kind(),
            "payload": [{"path": f.path, "type": f.kind, "value": None if f.value == HIDDEN else f.value}
                        for f in self.described_body()],
        }


def describe(body: dict[str, Any]) -> list[PayloadField]:
    """Every key of an event body with its type; values only when they are references or codes."""
    vetted = _contract_fields()
    out: list[PayloadField] = []
    for key in body:
        value = body[key]
        if key == "payload" and isinstance(value, dict):
            out.append(PayloadField("payload", "object", HIDDEN))
            _describe_payload(value, "payload", vetted, out)
        elif key in _ENVELOPE:
            shown = _show(value) if value is None or _ENVELOPE[key](value) else HIDDEN
            out.append(PayloadField(_key(key), _kind(value), shown))
        else:
            out.append(PayloadField(_key(key), _kind(value), _safe(value, vetted=False)))
    return out


def _describe_payload(payload: dict, prefix: str, vetted: frozenset[str], out: list[PayloadField]) -> None:
    for key, value in payload.items():
        path = f"{prefix}.{_key(key)}"
        if isinstance(value, dict):
            out.append(PayloadField(path, "object", HIDDEN))
            _describe_payload(value, path, frozenset(), out)  # nested keys are not contract fields
        else:
            out.append(PayloadField(path, _kind(value), _safe(value, vetted=key in vetted)))


def _safe(value: Any, *, vetted: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        if REFERENCE.match(value) or (vetted and CODE.match(value)):
            return value
        return HIDDEN
    if isinstance(value, bool) and vetted:
        return _show(value)
    if isinstance(value, list) and value and all(_safe(v, vetted=vetted) != HIDDEN for v in value):
        return ", ".join(_safe(v, vetted=vetted) for v in value)
    return HIDDEN


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _key(key: str) -> str:
    return key if len(key) <= 40 else key[:39] + "…"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return f"array[{len(value)}]"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _parse(entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    def get(name: str) -> str:
        return text(fields.get(name.encode()))

    try:
        deliveries = int(get("deliveries") or 0)
    except ValueError:
        deliveries = 0
    return DeadLetter(
        id=text(entry_id), origin_stream=get("origin_stream"), origin_id=get("origin_id"), group=get("group"),
        reason=get("reason"), deliveries=deliveries, event_id=get("event_id"), event_type=get("event_type"),
        body=fields.get(b"body", b""),
    )


class DeadLetters:
    """One namespace's dead-letter stream; use as `async with DeadLetters(...) as letters:`."""

    def __init__(self, url: str, namespace: str, timeout: float = 5.0):
        self.url = url
        self.namespace = namespace
        self.timeout = timeout
        self.stream = dead_letter_stream(namespace)
        self.client = redis_client(url, timeout)

    async def __aenter__(self) -> DeadLetters:
        await self._call(self.client.ping())
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()

    async def _call(self, awaitable):
        return await redis_call(awaitable, self.url, self.timeout)

    async def list(self, limit: int | None = None) -> list[DeadLetter]:
        entries = await self._call(self.client.xrange(self.stream, count=limit))
        return [_parse(entry_id, fields) for entry_id, fields in entries]

    async def get(self, entry_id: str) -> DeadLetter:
        if not ENTRY_ID.match(entry_id):
            raise OpsError(f"{entry_id!r} is not a stream entry id (like 1700000000000-0)")
        entries = await self._call(self.client.xrange(self.stream, min=entry_id, max=entry_id, count=1))
        if not entries:
            raise OpsError(f"no dead letter {entry_id} in {self.stream}")
        return _parse(*entries[0])

    async def discard(self, letters: list[DeadLetter]) -> int:
        if not letters:
            return 0
        return int(await self._call(self.client.xdel(self.stream, *[letter.id for letter in letters])))

    async def replay(self, letters: list[DeadLetter]) -> tuple[list[DeadLetter], list[tuple[DeadLetter, str]]]:
        """Publish each body again to its origin stream, then delete the dead letter.

        Returns (replayed, refused with the reason). Every group reading the origin stream gets
        the event again; the groups that handled it already drop it in their inbox.
        """
        origins = {stream_name(self.namespace, p) for p in PRODUCERS}
        ready: list[tuple[DeadLetter, dict]] = []
        refused: list[tuple[DeadLetter, str]] = []
        for letter in letters:
            body = letter.envelope()
            if body is None:
                refused.append((letter, f"its body is {letter.body_kind()}: nothing to replay"))
            elif letter.origin_stream not in origins:
                refused.append((letter, f"its origin {letter.origin_stream!r} is not a stream of namespace {self.namespace!r}"))
            else:
                ready.append((letter, body))
        if not ready:
            return [], refused

        broker = RedisBroker(self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout)
        replayed: list[DeadLetter] = []
        try:
            await self._call(broker.connect())
            for letter, body in ready:
                headers = {"event_id": str(body.get("event_id", "")), "event_type": str(body.get("type", ""))}
                correlation = body.get("correlation_id")
                await self._call(broker.publish(
                    body, stream=letter.origin_stream, headers=headers,
                    correlation_id=correlation if isinstance(correlation, str) else None,
                ))
                # Published first, deleted second: a crash in between means one more replay, never a loss.
                await self._call(self.client.xdel(self.stream, letter.id))
                replayed.append(letter)
        finally:
            await broker.stop()
        return replayed, refused
