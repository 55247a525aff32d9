from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings


class HousingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="HOUSING_", extra="ignore")

    service_name: str = "housing"
    database_url: str = "sqlite+aiosqlite:///./var/housing.db"
    port: int = 8002
    stay_months: int = Field(3, ge=1, le=24, description="length of an emergency stay in calendar months")
    seed_places: bool = Field(True, description="load the inventory from the seed file on first start")
    seed_file: str = Field("", description="inventory to load on first start; default services/housing/seed/places.json")
    stay_ending_days: Annotated[list[int], NoDecode] = Field(
        [14, 3], description="StayEnding is announced this many days before a stay's planned end, e.g. `14,3`")
    clock_tick_seconds: float = Field(60.0, gt=0, description="how often the stay clock looks for stays ending")
    time_zone: str = Field("Europe/Brussels", description="the refuge's calendar: stays start and end on its dates")
    clock_offset_days: int = Field(0, description="TEST ONLY: moves housing's calendar by this many days")

    @field_validator("stay_ending_days", mode="before")
    @classmethod
    def _comma_list(cls, value):
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("stay_ending_days")
    @classmethod
    def _sensible_thresholds(cls, value: list[int]) -> list[int]:
        if any(days < 0 or days > 366 for days in value):
            raise ValueError("each threshold is a number of days between 0 and 366")
        return sorted(set(value), reverse=True)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _no_clock_offset_outside_development(self):
        if self.clock_offset_days and self.environment != "development":
            raise ValueError("HOUSING_CLOCK_OFFSET_DAYS is for tests only and must be 0 outside development")
        return self
