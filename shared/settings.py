"""Settings common to every service; each service subclasses with its own env prefix."""

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_consumer_name(service: str) -> str:
    # One consumer name per process, so replicas of a service share a group but never a name.
    return f"{service}-{socket.gethostname()}-{os.getpid()}"


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    service_name: str = "service"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "sqlite+aiosqlite:///./var/service.db"
    namespace: str = Field("refuge", description="prefix of every stream name; tests use their own")
    consumer_name: str = ""
    batch_size: int = Field(100, ge=1, le=1000)
    poll_interval_ms: int = Field(200, ge=10)
    reclaim_idle_ms: int = Field(30_000, ge=100, description="pending entries idle this long are taken over")
    max_deliveries: int = Field(5, ge=1, description="deliveries before an entry is dead-lettered")
    outbox_poll_seconds: float = Field(1.0, gt=0)
    create_tables: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    def consumer(self) -> str:
        return self.consumer_name or default_consumer_name(self.service_name)
