import asyncio
import io
import json

import structlog

from shared.logging import LinesPerTurn, configure_logging


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


class CountedWrites(io.BytesIO):
    def __init__(self):
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        return super().write(data)


def test_lines_of_one_turn_of_the_loop_reach_the_log_in_one_write_and_in_order():
    out = CountedWrites()
    lines = LinesPerTurn(out)

    async def handle_a_batch():
        for n in range(3):
            lines.info(b'{"event":"referral.made","n":%d}' % n)
        assert out.getvalue() == b""  # still this turn
        await asyncio.sleep(0)
        return out.getvalue()

    written = asyncio.run(handle_a_batch())
    assert written.splitlines() == [b'{"event":"referral.made","n":%d}' % n for n in range(3)]
    assert out.writes == 1


def test_a_line_logged_outside_the_loop_is_written_at_once_and_none_waits_for_a_closed_loop():
    out = CountedWrites()
    lines = LinesPerTurn(out)
    lines.info(b"starting")
    assert out.getvalue() == b"starting\n"

    async def last_words():
        lines.error(b"stopping")  # the loop ends before its turn is over

    loop = asyncio.new_event_loop()
    loop.run_until_complete(last_words())
    loop.close()

    async def next_run():
        lines.info(b"started again")
        await asyncio.sleep(0)

    asyncio.run(next_run())
    assert out.getvalue().splitlines() == [b"starting", b"stopping", b"started again"]
