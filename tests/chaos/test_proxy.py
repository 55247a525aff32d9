"""The suite's TCP proxy in front of a Redis server of the test's own: cuts and delays end by themselves."""

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.testing.proxy import TcpProxy


@pytest.fixture
def proxy(own_redis):
    with TcpProxy(own_redis.port) as proxy:
        yield proxy


def client(proxy: TcpProxy, timeout: float = 2.0) -> redis.Redis:
    # no retries: each call shows what the network did to that one exchange
    return redis.Redis(port=proxy.port, socket_timeout=timeout, socket_connect_timeout=timeout,
                       retry=Retry(NoBackoff(), 0))


def test_traffic_flows_through_the_proxy(proxy):
    c = client(proxy)
    c.set("k", "v")
    assert c.get("k") == b"v"
    assert proxy.stats.connections == 1


def test_a_cut_drops_open_connections_and_refuses_new_ones_until_it_ends(proxy):
    c = client(proxy)
    assert c.ping()
    proxy.cut(0.8)
    with pytest.raises(redis.ConnectionError):
        c.ping()  # the open connection was aborted
    with pytest.raises(redis.ConnectionError):
        client(proxy).ping()  # and a new one is refused
    time.sleep(0.9)
    assert client(proxy).ping()  # the cut ended by itself
    assert proxy.stats.cuts == 1 and proxy.stats.refused >= 1


def test_a_delay_holds_every_exchange_for_its_duration_only(proxy):
    c = client(proxy, timeout=0.3)
    assert c.ping()
    proxy.delay(0.6, seconds=1.0)
    with pytest.raises(redis.TimeoutError):
        c.ping()  # the answer comes later than the client waits
    time.sleep(1.1)
    assert client(proxy, timeout=0.3).ping()


def test_an_upstream_that_is_down_is_a_refused_connection_not_a_hang(proxy, own_redis):
    own_redis.stop()
    with pytest.raises(redis.ConnectionError):
        client(proxy).ping()
    own_redis.start()
    assert client(proxy).ping()
