"""Operators can see what the system does: metrics on every service, one trace across services."""

import json

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from shared.testing.webhook_receiver import WebhookReceiver

from .helpers import PERSON, open_stay, staff_headers, wait_for


def metric(text: str, series: str, **labels) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(series):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def services_in_trace(collector: WebhookReceiver, trace_id: str) -> set[str]:
    """The services that exported a span of `trace_id` to the OTLP/HTTP collector."""
    found = set()
    for received in collector.requests("/v1/traces"):
        export = ExportTraceServiceRequest.FromString(received.body)
        for resource_spans in export.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name")
            if any(s.trace_id.hex() == trace_id for scope in resource_spans.scope_spans for s in scope.spans):
                found.add(service)
    return found


def test_metrics_move_and_one_trace_follows_a_request_from_intake_to_notify(stack_factory, smtp_sink):
    collector = WebhookReceiver().start()
    stack = stack_factory(extra_env={"REFUGE_OTLP_ENDPOINT": collector.url()}).start()
    response = httpx.post(f"{stack.url('intake')}/api/requests", json=PERSON, headers=staff_headers(), timeout=10)
    assert response.status_code == 201
    person_ref = response.json()["person_ref"]
    trace_id = response.headers["traceparent"].split("-")[1]
    assert wait_for(lambda: open_stay(stack.url("housing"), person_ref))
    assert smtp_sink.mailbox.wait_for(lambda m: person_ref in m["Subject"])

    def scrape():
        # intake handles PersonAdmitted at the same moment as notify mails it, so it may still be at it.
        texts = {name: httpx.get(f"{stack.url(name)}/metrics", timeout=5).text for name in stack.services}
        return texts if all("refuge_handler_seconds_bucket" in t for t in texts.values()) else None

    scraped = wait_for(scrape)
    assert scraped, stack.logs()
    assert metric(scraped["intake"], "refuge_outbox_published_total", service="intake") >= 2
    assert metric(scraped["intake"], "refuge_http_requests_total", service="intake", method="POST", status="201") == 1
    assert metric(scraped["housing"], "refuge_messages_processed_total", service="housing", event_type="RequestAssessed") >= 1
    assert metric(scraped["notify"], "refuge_messages_processed_total", service="notify", event_type="PersonAdmitted") >= 1
    assert metric(scraped["referrals"], "refuge_messages_received_total", service="referrals") >= 2
    assert metric(scraped["housing"], "refuge_domain", service="housing", name="places_occupied", kind="emergency") == 1
    assert metric(scraped["housing"], "refuge_domain", service="housing", name="places_vacant", kind="emergency") >= 1
    assert metric(scraped["housing"], "refuge_domain", service="housing", name="waiting_list", kind="emergency") == 0
    assert metric(scraped["referrals"], "refuge_domain", service="referrals", name="referrals_open", kind="all") == 0
    for name, text in scraped.items():
        assert "refuge_consumer_group_pending" in text, name
        assert "refuge_handler_seconds_bucket" in text, name

    def lines_with_trace(service: str) -> list[dict]:
        found = []
        for line in stack.services[service].log_path.read_text().splitlines():
            if line.startswith("{"):
                entry = json.loads(line)
                if entry.get("trace_id") == trace_id:
                    found.append(entry)
        return found

    assert wait_for(lambda: lines_with_trace("notify"))
    for service in ("intake", "housing", "notify"):
        entries = lines_with_trace(service)
        assert entries, f"no log line of {service} carries the request's trace id"
        assert all(e["service"] == service for e in entries)
    assert any(e.get("event_id") for e in lines_with_trace("housing"))

    # The same trace reaches an OpenTelemetry collector from every service the request went through.
    assert wait_for(lambda: {"intake", "housing", "notify"} <= services_in_trace(collector, trace_id)), \
        services_in_trace(collector, trace_id)
    collector.stop()
