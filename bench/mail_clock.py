"""An SMTP sink in its own process that notes when each mail arrives, for end-to-end latency.

`python -m bench.mail_clock --port 8025 --out arrivals.txt` appends one line per accepted mail:
`<time.monotonic()> <person_ref or ->`. Linux's monotonic clock is shared by every process on the
machine, so these times compare with the load generator's. It keeps no mail (the benchmark sends
up to a hundred thousand) and runs apart from the load generator so neither slows the other.
"""

from __future__ import annotations

import argparse
import re
import signal
import threading
import time
from pathlib import Path

from aiosmtpd.controller import Controller

PERSON_REF = re.compile(rb"^Subject:[^\r\n]*?\b(P-[0-9a-f]{6,32})\b", re.MULTILINE)


class ClockedMailbox:
    def __init__(self, out: Path):
        self.out = open(out, "a", buffering=1)

    async def handle_DATA(self, _server, _session, envelope) -> str:
        arrived = time.monotonic()
        match = PERSON_REF.search(envelope.content)
        ref = match.group(1).decode() if match else "-"
        self.out.write(f"{arrived:.6f} {ref}\n")
        return "250 Message accepted for delivery"


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP sink noting each mail's arrival time")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    controller = Controller(ClockedMailbox(args.out), hostname="127.0.0.1", port=args.port)
    controller.start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main()
