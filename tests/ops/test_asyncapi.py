"""docs/asyncapi.json: generated from the contracts, committed, and complete."""

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from shared.cli import app
from shared.events import REGISTRY, Envelope, stream_name
from shared.events.codes import Decision, PlaceKind, Track
from shared.events.intake import RequestAssessed
from shared.events.streams import PRODUCERS, SUBSCRIPTIONS
from shared.ops.asyncapi import DOCUMENT, build_document, render

runner = CliRunner()


def test_the_committed_asyncapi_document_matches_the_contracts():
    committed = DOCUMENT.read_text() if DOCUMENT.exists() else ""
    assert committed == render(build_document()), "docs/asyncapi.json is stale: run `make docs` and commit it"


def resolve(document: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = document
    for part in ref[2:].split("/"):
        assert part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_document_has_every_contract_channel_and_operation():
    document = json.loads(render(build_document()))
    assert document["asyncapi"] == "3.0.0"
    for ref in refs(document):
        resolve(document, ref)

    messages = document["components"]["messages"]
    for name, contract in REGISTRY.items():
        message = messages[name]
        assert message["name"] == name and message["x-schema-version"] == contract.schema_version
        payload = message["payload"]["properties"]
        assert payload["type"]["const"] == name and payload["producer"]["const"] == contract.producer
        fields = resolve(document, payload["payload"]["$ref"])["properties"]
        assert set(fields) == set(contract.model_fields)

    channels = document["channels"]
    operations = document["operations"].values()
    for key, channel in channels.items():
        used = [op for op in operations if op["channel"]["$ref"] == f"#/channels/{key}"]
        assert used, f"channel {key} has no operation"
        for op in used:
            assert all(m["$ref"].startswith(f"#/channels/{key}/messages/") for m in op["messages"])
    for producer in PRODUCERS:
        assert channels[producer]["address"] == stream_name("refuge", producer)
        senders = [op for op in operations if op["action"] == "send" and op["channel"]["$ref"] == f"#/channels/{producer}"]
        assert len(senders) == 1
        published = {m["$ref"].rsplit("/", 1)[1] for m in senders[0]["messages"]}
        assert published == {n for n, c in REGISTRY.items() if c.producer in (producer, "any")}
    receivers = {(op["x-consumer-group"], op["channel"]["$ref"].rsplit("/", 1)[1])
                 for op in operations if op["action"] == "receive"}
    assert receivers == {(consumer, producer) for consumer, producers in SUBSCRIPTIONS.items() for producer in producers}


def test_a_message_schema_accepts_a_real_envelope_and_refuses_a_wrong_code():
    document = json.loads(render(build_document()))
    schema = {**document, "$ref": "#/components/messages/RequestAssessed/payload"}
    envelope = Envelope.wrap(RequestAssessed(request_ref="R-1a", person_ref="P-2b", decision=Decision.accommodate,
                                             track=Track.youth, place_kind=PlaceKind.emergency)).model_dump(mode="json")
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    validator.validate(envelope)
    envelope["payload"]["decision"] = "teleport"
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(envelope)


def test_refuge_docs_writes_the_document_and_check_reports_a_stale_one(tmp_path):
    target = tmp_path / "asyncapi.json"
    written = runner.invoke(app, ["docs", "--output", str(target)])
    assert written.exit_code == 0, written.output
    assert runner.invoke(app, ["docs", "--output", str(target), "--check"]).exit_code == 0
    target.write_text(target.read_text().replace('"3.0.0"', '"2.6.0"'))
    stale = runner.invoke(app, ["docs", "--output", str(target), "--check"])
    assert stale.exit_code == 1 and "run `make docs`" in stale.output
