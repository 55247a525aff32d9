"""Redis ACL users, one per service, limited to the streams it writes and reads (Redis 7).

A service may append only to its own stream and to the dead-letter stream; on the streams it
reads it may only use consumer-group commands, and XRANGE to copy an entry it cannot decode
into the dead-letter stream (it could read that entry through its group anyway). Generated from the subscriptions declared in
shared/events/streams.py, so the compose file and the code cannot drift apart (a test checks).
"""

from __future__ import annotations

from shared.events import PRODUCERS, dead_letter_stream, stream_name, streams_read_by

CONNECTION = "+ping +hello +auth +select +client|setname +client|id"
CONSUMER = "+xreadgroup +xrange +xack +xautoclaim +xpending +xinfo|groups +xinfo|consumers +xinfo|stream +xgroup|create"


def service_acl(service: str, password: str, namespace: str = "refuge") -> str:
    own = stream_name(namespace, service)
    dead = dead_letter_stream(namespace)
    reads = " ".join(f"~{s}" for s in streams_read_by(namespace, service))
    return (
        f"{service} on >{password} resetkeys resetchannels -@all {CONNECTION} +multi +exec +discard "
        f"~{own} ~{dead} +xadd ({reads} {CONSUMER})"
    )


def all_acls(passwords: dict[str, str], namespace: str = "refuge") -> list[str]:
    return ["default off"] + [service_acl(s, passwords[s], namespace) for s in PRODUCERS]


def compose_args(namespace: str = "refuge") -> list[str]:
    """The `--user` arguments of the production compose file, with passwords from the env file."""
    args = ["--user", "default off"]
    for service in PRODUCERS:
        args += ["--user", service_acl(service, "${%s_REDIS_PASSWORD:?required}" % service.upper(), namespace)]
    args += ["--user", "ops on >${OPS_REDIS_PASSWORD:?required} ~* &* +@all"]
    return args
