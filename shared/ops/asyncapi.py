"""The AsyncAPI 3.0.0 document of the refuge's events, generated from the contracts.

One channel per stream (addresses use the default namespace), one message per contract whose
payload is the envelope carrying that contract, a `send` operation for the publishing service
and a `receive` operation for each consuming service's group.
"""

from __future__ import annotations

import json
import re
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

from shared.events.envelope import ANY_PRODUCER
from shared.events import REGISTRY, Envelope
from shared.events.streams import PRODUCERS, SUBSCRIPTIONS, dead_letter_stream, group_name, stream_name

DEFAULT_NAMESPACE = "refuge"
DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
_REF = "#/components/schemas/{model}"
DEAD_LETTER_CHANNEL = "deadLetters"


def build_document(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name in sorted(REGISTRY):
        contract = REGISTRY[name]
        payload_schema = contract.model_json_schema(ref_template=_REF, mode="serialization")
        _hoist(payload_schema, schemas)
        schemas[name] = payload_schema
        message = {
            "name": name,
            "title": _title(name),
            "contentType": "application/json",
            "payload": _envelope_schema(name, contract.schema_version, contract.producer),
            "correlationId": {"location": "$message.payload#/correlation_id"},
            "x-schema-version": contract.schema_version,
            "x-producer": contract.producer,
        }
        if contract.__doc__:
            message["summary"] = " ".join(contract.__doc__.split())
        messages[name] = message
    messages["DeadLetter"] = _dead_letter_message()

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for producer in PRODUCERS:
        names = sorted(n for n, c in REGISTRY.items() if c.producer in (producer, ANY_PRODUCER))
        channels[producer] = {
            "address": stream_name(namespace, producer),
            "title": f"Events {producer} publishes",
            "description": f"Redis stream of the events published by the {producer} service "
                           f"(`<namespace>.{producer}.events`).",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        channel_messages = [{"$ref": f"#/channels/{producer}/messages/{n}"} for n in names]
        operations[f"{producer}.publish"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{producer}"},
            "summary": f"{producer} publishes its events through its outbox relay.",
            "messages": channel_messages,
        }
        for consumer in sorted(c for c, producers in SUBSCRIPTIONS.items() if producer in producers):
            operations[f"{consumer}.receive.{producer}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{producer}"},
                "summary": f"{consumer} reads {producer}'s stream through consumer group "
                           f"`{group_name(consumer)}`; types it has no handler for are acknowledged and skipped.",
                "messages": channel_messages,
                "x-consumer-group": group_name(consumer),
            }

    channels[DEAD_LETTER_CHANNEL] = {
        "address": dead_letter_stream(namespace),
        "title": "Dead letters",
        "description": "Entries a consumer could not read, or whose handler kept failing; "
                       "`refuge dead-letters` lists, replays and discards them.",
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
    }
    for consumer in sorted(SUBSCRIPTIONS):
        operations[f"{consumer}.deadLetter"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{DEAD_LETTER_CHANNEL}"},
            "summary": f"{consumer} moves an unreadable or exhausted entry here and acknowledges it.",
            "messages": [{"$ref": f"#/channels/{DEAD_LETTER_CHANNEL}/messages/DeadLetter"}],
            "x-consumer-group": group_name(consumer),
        }

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Refuge events",
            "version": _version(),
            "description": "Events the refuge's four services exchange over Redis Streams. Events carry "
                           "opaque references and codes only, never personal data. Stream names start with "
                           "the deployment's namespace (`refuge` by default).",
            "license": {"name": "AGPL-3.0-or-later"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "production": {"host": "redis:6379", "protocol": "redis",
                           "description": "Redis 7 with AOF, as in docker-compose.yml"},
            "development": {"host": "127.0.0.1:6379", "protocol": "redis",
                            "description": "the embedded redis-server `make run` starts"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(path: Path = DOCUMENT) -> bool:
    """Write the document; True when the file changed."""
    content = render(build_document())
    path = Path(path)
    if path.exists() and path.read_text() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return True


def _envelope_schema(name: str, version: int, producer: str) -> dict[str, Any]:
    schema = Envelope.model_json_schema(ref_template=_REF, mode="serialization")
    schema.pop("$defs", None)
    schema["title"] = f"{name} envelope"
    properties = schema["properties"]
    properties["type"] = {"const": name, "type": "string", "title": "Type"}
    properties["schema_version"] = {"const": version, "type": "integer", "title": "Schema Version"}
    properties["producer"] = {"const": producer, "type": "string", "title": "Producer"}
    properties["payload"] = {"$ref": _REF.format(model=name)}
    return schema


def _dead_letter_message() -> dict[str, Any]:
    def string(description: str) -> dict[str, str]:
        return {"type": "string", "description": description}

    fields = {
        "origin_stream": string("stream the entry was read from"),
        "origin_id": string("its entry id there"),
        "group": string("consumer group that gave up on it"),
        "reason": string("why: invalid field, unknown contract, or the handler failing N times"),
        "deliveries": string("deliveries before it was dead-lettered (decimal)"),
        "event_id": string("envelope event id, empty when the envelope was unreadable"),
        "event_type": string("envelope type, empty when the envelope was unreadable"),
        "body": string("the entry's JSON body as sent, or its raw bytes when unreadable"),
    }
    return {
        "name": "DeadLetter",
        "title": "Dead letter",
        "summary": "Plain stream fields written by the consumer (not a FastStream message).",
        "contentType": "application/octet-stream",
        "payload": {"type": "object", "properties": fields, "required": sorted(fields)},
    }


def _hoist(schema: dict[str, Any], schemas: dict[str, Any]) -> None:
    for def_name, definition in schema.pop("$defs", {}).items():
        if def_name in schemas and schemas[def_name] != definition:
            raise ValueError(f"two different schemas are named {def_name!r}")
        if def_name in REGISTRY:
            raise ValueError(f"schema {def_name!r} clashes with a contract of that name")
        schemas[def_name] = definition


def _title(name: str) -> str:
    words = re.findall(r"[A-Z][a-z0-9]*", name)
    return " ".join([words[0]] + [w.lower() for w in words[1:]]) if words else name


def _version() -> str:
    try:
        return package_metadata.version("refuge")
    except package_metadata.PackageNotFoundError:
        return "0.0.0"
