from pydantic import EmailStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    service_name: str = "notify"
    database_url: str = "sqlite+aiosqlite:///./var/notify.db"
    port: int = 8004
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_timeout: float = 10.0
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None
    mail_from: EmailStr = "refuge-system@refuge.example"
    social_coordinator_email: EmailStr = "coordination@refuge.example"
    staff_language: str = "fr"
    console_url: str = "http://127.0.0.1:8001"
    max_attempts: int = 6
    retry_base_seconds: float = 2.0
    sender_poll_seconds: float = 1.0
