"""What every operator command shares: a Redis client with timeouts, errors with exit codes,
URLs safe to print."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import redis.asyncio as aioredis

T = TypeVar("T")

# Exit codes of the `refuge` command (2 is Typer's own for bad usage).
EXIT_FAILED = 1  # refused or not found: unknown id, unreadable body, non-empty store, bad backup
EXIT_UNREACHABLE = 3  # Redis or a store did not answer in time


class OpsError(Exception):
    """A failure the operator can act on; the message is printed as is, so it never holds personal data."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def redacted(url: str) -> str:
    """The URL without its password, for messages and the backup manifest."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def redis_client(url: str, timeout: float) -> aioredis.Redis:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


async def redis_call(awaitable: Awaitable[T], url: str, timeout: float) -> T:
    """Await one Redis call, turning 'no answer' into an OpsError that names the server, not its password."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import InvalidResponse, RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        return await asyncio.wait_for(awaitable, timeout=timeout)
    except (TimeoutError, RedisTimeoutError) as exc:
        raise OpsError(f"Redis at {redacted(url)} did not answer within {timeout:g}s", EXIT_UNREACHABLE) from exc
    except (RedisConnectionError, InvalidResponse, OSError) as exc:
        raise OpsError(f"Redis at {redacted(url)} is unreachable ({type(exc).__name__})", EXIT_UNREACHABLE) from exc
    except RedisError as exc:
        raise OpsError(f"Redis at {redacted(url)} answered with an error: {exc}") from exc


def text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
