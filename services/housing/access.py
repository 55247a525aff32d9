"""Who may do what in housing's API (need to see). Enforced by shared.web.enforce_access on every
/api route; tests/service/test_privacy_access.py checks every route against it. Addresses are
further limited inside the answers to housing staff and administrators (api.ADDRESS_ROLES)."""

from shared.auth import Role

ADMIN = Role.administrator.value
READERS = frozenset({Role.intake_worker.value, Role.social_coordinator.value, Role.housing.value, ADMIN})
STAY_READERS = READERS | {Role.psychologist.value}  # the console shows a person's stay to whoever follows them
MANAGERS = frozenset({Role.social_coordinator.value, Role.housing.value, ADMIN})
INVENTORY = frozenset({Role.housing.value, ADMIN})

ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/board"): READERS,
    ("GET", "/api/places"): READERS,
    ("GET", "/api/flats"): READERS,
    ("GET", "/api/stays"): STAY_READERS,
    ("GET", "/api/stays/ending"): READERS,
    ("GET", "/api/stays/{stay_ref}"): STAY_READERS,
    ("GET", "/api/waitlist"): READERS,
    ("GET", "/api/offers"): READERS,
    ("POST", "/api/stays"): MANAGERS,
    ("POST", "/api/stays/{stay_ref}/extend"): MANAGERS,
    ("POST", "/api/stays/{stay_ref}/move"): MANAGERS,
    ("POST", "/api/stays/{stay_ref}/discharge"): MANAGERS,
    ("POST", "/api/waitlist"): MANAGERS,
    ("POST", "/api/waitlist/{entry_ref}/leave"): MANAGERS,
    ("POST", "/api/offers/{offer_ref}/accept"): MANAGERS,
    ("POST", "/api/offers/{offer_ref}/refuse"): MANAGERS,
    ("POST", "/api/flats"): INVENTORY,
    ("POST", "/api/places"): INVENTORY,
    ("POST", "/api/places/{place_ref}/out-of-service"): INVENTORY,
    ("POST", "/api/places/{place_ref}/back-in-service"): INVENTORY,
}
