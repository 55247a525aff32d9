"""With no collector configured, spans are not built, yet each handler and request still gets an
identity of its own in the trace it belongs to, so logs and events can be followed across services."""

from shared.observability import current_traceparent, span

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def parts(traceparent: str) -> list[str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    return [version, trace_id, span_id, flags]


def test_a_span_continues_its_parents_trace_under_an_id_of_its_own():
    with span("handle RequestAssessed", PARENT):
        inside = parts(current_traceparent())
    assert inside[1] == parts(PARENT)[1]
    assert inside[2] != parts(PARENT)[2] and len(inside[2]) == 16
    assert inside[3] == "01"
    assert current_traceparent() is None  # nothing leaks past the span


def test_a_span_without_a_parent_starts_a_trace_and_its_children_join_it():
    with span("POST /api/requests"):
        outer = parts(current_traceparent())
        with span("handle RequestReceived", current_traceparent()):
            inner = parts(current_traceparent())
    with span("POST /api/requests"):
        other = parts(current_traceparent())
    assert inner[1] == outer[1] and inner[2] != outer[2]
    assert other[1] != outer[1]
