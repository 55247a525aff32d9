"""`make run`: the whole stack on one machine with embedded defaults, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from shared.testing.redis_server import RedisServer
from shared.testing.smtp_sink import SmtpSink
from shared.testing.stack import SERVICES, Stack

VAR = Path(os.environ.get("REFUGE_VAR", "var")).resolve()
PORTS = {"intake": 8001, "housing": 8002, "referrals": 8003, "notify": 8004}


def main() -> int:
    redis_port = int(os.environ.get("REFUGE_REDIS_PORT", "6390"))
    smtp_port = int(os.environ.get("REFUGE_SMTP_PORT", "8025"))
    redis = RedisServer(VAR / "redis", port=redis_port).start()
    sink = SmtpSink(smtp_port, VAR / "mail").start()
    # Demo partners get example addresses only, so every partner mail lands in the sink too.
    demo = {"NOTIFY_SEED_PARTNERS": str(Path(__file__).resolve().parents[1] / "services/notify/seed/partners.demo.json")}
    stack = Stack(workdir=VAR, redis_url=redis.url, smtp_port=smtp_port, ports=dict(PORTS), extra_env=demo)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start(SERVICES, timeout=60)
        print(f"""
The refuge stack is running.
  staff console:                    http://127.0.0.1:{PORTS['intake']}/
    first account:                  .venv/bin/python -m services.intake.accounts create NAME --role administrator
  intake API docs:                  http://127.0.0.1:{PORTS['intake']}/docs
  housing API docs:                 http://127.0.0.1:{PORTS['housing']}/docs
  referrals API docs:               http://127.0.0.1:{PORTS['referrals']}/docs
  notify API docs:                  http://127.0.0.1:{PORTS['notify']}/docs
  mails received by the SMTP sink:  {VAR / 'mail'}  (SMTP on 127.0.0.1:{smtp_port})
  Redis (AOF under {VAR / 'redis'}): {redis.url}
  service logs:                     {VAR / 'logs'}
Press Ctrl-C to stop.""", flush=True)
        while not stopping:
            for name, proc in stack.services.items():
                if proc.process and proc.process.poll() is not None:
                    print(f"{name} exited with {proc.process.returncode}; see {proc.log_path}", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
    finally:
        print("stopping…", flush=True)
        stack.stop()
        sink.stop()
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
