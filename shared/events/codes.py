"""Codes that may travel on the broker: closed vocabularies, never free text."""

from enum import StrEnum


class Channel(StrEnum):
    phone = "phone"
    email = "email"
    walk_in = "walk_in"
    partner = "partner"
    fedasil = "fedasil"


class Decision(StrEnum):
    accommodate = "accommodate"
    waitlist = "waitlist"
    support_only = "support_only"
    refer = "refer"
    decline = "decline"


class Track(StrEnum):
    youth = "youth"
    cadal = "cadal"
    upstream = "upstream"
    minor = "minor"
    none = "none"


class PlaceKind(StrEnum):
    emergency = "emergency"
    post_shelter = "post_shelter"
    cadal = "cadal"


class Urgency(StrEnum):
    immediate = "immediate"
    days = "days"
    weeks = "weeks"


class Need(StrEnum):
    accommodation = "accommodation"
    administrative = "administrative"
    legal = "legal"
    social = "social"
    physical_health = "physical_health"
    mental_health = "mental_health"
    socio_cultural = "socio_cultural"
    housing_search = "housing_search"
    job_training_education = "job_training_education"


HEALTH_NEEDS = frozenset({Need.physical_health, Need.mental_health})


class ExitDestination(StrEnum):
    own_housing = "own_housing"
    post_shelter = "post_shelter"
    family = "family"
    another_shelter = "another_shelter"
    unknown = "unknown"
