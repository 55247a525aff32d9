import json

import structlog

from shared.logging import configure_logging


def test_a_logged_failure_shows_where_it_happened_but_no_local_variable(capsys):
    configure_logging("intake")

    def record_request(name: str) -> None:
        phone = "+32 470 00 11 22"  # noqa: F841  (a local a traceback renderer could print)
        raise RuntimeError("store unavailable")

    try:
        record_request("Canaryname-in-a-frame")
    except RuntimeError:
        structlog.get_logger("test").exception("request.failed")
    captured = capsys.readouterr()
    line = (captured.out + captured.err).strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["exception"][0]["frames"][-1]["name"] == "record_request"
    assert "Canaryname-in-a-frame" not in line and "470 00 11 22" not in line
