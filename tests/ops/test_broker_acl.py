"""Each service reaches Redis as its own ACL user, limited to its streams (issue: broker access)."""

import subprocess
from pathlib import Path

import pytest
import redis
import yaml

from shared.broker_acl import all_acls, compose_args
from shared.events import PRODUCERS, dead_letter_stream, stream_name
from shared.testing.redis_server import RedisServer, redis_binary

from ..e2e.helpers import open_stay, post_request, wait_for

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {s: f"pw-{s}" for s in PRODUCERS}


def redis_major() -> int:
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout
    return int(out.split("v=")[1].split(".")[0])


def acl_args(namespace: str) -> list[str]:
    args = []
    for rule in all_acls(PASSWORDS, namespace) + ["ops on >ops ~* &* +@all"]:
        args += ["--user", *rule.split()]
    return args


def test_the_compose_file_declares_exactly_the_generated_users():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"]
    flat = []
    args = compose_args()
    for i in range(0, len(args), 2):
        flat += [args[i], *args[i + 1].split()]
    assert command[command.index("--user"):] == flat


@pytest.fixture
def acl_redis(tmp_path, namespace):
    if redis_major() < 7:
        pytest.fail("ACL selectors need redis-server 7; install Debian's redis-server")
    server = RedisServer(tmp_path / "acl-redis", extra_args=acl_args(namespace), password="ops", username="ops").start()
    yield server
    server.stop()


def test_services_work_as_their_own_users_and_cannot_write_each_others_streams(
        acl_redis, stack_factory, smtp_sink, namespace):
    env = {f"{s.upper()}_REDIS_URL": acl_redis.url_for(s, PASSWORDS[s]) for s in PRODUCERS}
    stack = stack_factory(redis=acl_redis.url, extra_env=env).start()
    person_ref = post_request(stack.url("intake"))["person_ref"]
    assert wait_for(lambda: open_stay(stack.url("housing"), person_ref)), stack.logs()
    assert smtp_sink.mailbox.wait_for(lambda m: person_ref in m["Subject"])

    housing = redis.Redis.from_url(acl_redis.url_for("housing", PASSWORDS["housing"]), socket_timeout=5)
    with pytest.raises(redis.exceptions.NoPermissionError):
        housing.xadd(stream_name(namespace, "intake"), {"forged": "RequestAssessed"})
    with pytest.raises(redis.exceptions.NoPermissionError):
        housing.xrange(stream_name(namespace, "referrals"))
    with pytest.raises(redis.exceptions.NoPermissionError):
        housing.delete(stream_name(namespace, "intake"))
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(port=acl_redis.port, socket_timeout=5).xlen(stream_name(namespace, "intake"))

    # An entry nobody can decode is copied to the dead letters under each reader's own user,
    # and the stream keeps flowing behind it.
    ops = redis.Redis.from_url(acl_redis.url, socket_timeout=5)
    bad_id = ops.xadd(stream_name(namespace, "intake"), {"__data__": b"\x00\xffnot an event"})
    dead_letters = dead_letter_stream(namespace)

    def dead_lettered_by_every_reader() -> bool:
        groups = {f[b"group"] for _id, f in ops.xrange(dead_letters) if f[b"origin_id"] == bad_id}
        return groups == {b"housing", b"referrals", b"notify"}

    assert wait_for(dead_lettered_by_every_reader), stack.logs()
    later = post_request(stack.url("intake"))["person_ref"]
    assert wait_for(lambda: open_stay(stack.url("housing"), later)), stack.logs()
    assert wait_for(lambda: all(ops.xpending(stream_name(namespace, "intake"), g)["pending"] == 0
                                for g in ("housing", "referrals", "notify")))
