"""Settings common to every service; each service subclasses with its own env prefix."""

import os
import socket

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.auth import DEV_SECRET


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
    batch_size: int = Field(500, ge=1, le=1000)
    # A read returns as soon as an event arrives: this only sets how often an idle service asks again.
    # At most 5 s: the broker connection gives up on a reply after 10 s.
    poll_interval_ms: int = Field(2000, ge=10, le=5000, description="longest wait of one read of a stream")
    reclaim_idle_ms: int = Field(30_000, ge=100, description="pending entries idle this long are taken over")
    max_deliveries: int = Field(5, ge=1, description="deliveries before an entry is dead-lettered")
    outbox_poll_seconds: float = Field(1.0, gt=0)
    create_tables: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    environment: str = Field("development", validation_alias=AliasChoices("REFUGE_ENVIRONMENT", "environment"))
    auth_secret: SecretStr = Field(SecretStr(DEV_SECRET), validation_alias=AliasChoices("REFUGE_AUTH_SECRET", "auth_secret"))
    token_max_age_seconds: int = Field(8 * 3600, validation_alias=AliasChoices("REFUGE_TOKEN_MAX_AGE_SECONDS", "token_max_age_seconds"))
    otlp_endpoint: str | None = Field(None, validation_alias=AliasChoices("REFUGE_OTLP_ENDPOINT", "otlp_endpoint"),
                                      description="OTLP/HTTP collector (e.g. http://collector:4318); spans stay in-process when unset")
    otlp_timeout_seconds: float = Field(5.0, gt=0, validation_alias=AliasChoices("REFUGE_OTLP_TIMEOUT_SECONDS", "otlp_timeout_seconds"))

    @model_validator(mode="after")
    def _no_default_secret_outside_development(self):
        if self.environment != "development" and self.auth_secret.get_secret_value() == DEV_SECRET:
            raise ValueError("REFUGE_AUTH_SECRET must be set outside development")
        return self

    def consumer(self) -> str:
        return self.consumer_name or default_consumer_name(self.service_name)
