"""Who may do what in notify's API (need to see). Enforced by shared.web.enforce_access on every
/api route; tests/service/test_privacy_access.py checks every route against it. Webhook secrets are
shown only in the answer that creates or rotates them."""

from shared.auth import Role

ADMIN = Role.administrator.value
STAFF = frozenset({Role.intake_worker.value, Role.social_coordinator.value, Role.housing.value, ADMIN})
COORDINATORS = frozenset({Role.social_coordinator.value, ADMIN})

ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/deliveries"): STAFF,
    ("GET", "/api/deliveries/{notification_ref}"): STAFF,
    ("POST", "/api/deliveries/{notification_ref}/retry"): COORDINATORS,
    ("GET", "/api/templates"): STAFF,
    ("GET", "/api/templates/{name}/preview"): STAFF,
    ("GET", "/api/rules/vocabulary"): STAFF,
    ("GET", "/api/rules"): STAFF,
    ("GET", "/api/rules/{rule_id}"): STAFF,
    ("POST", "/api/rules"): COORDINATORS,
    ("PUT", "/api/rules/{rule_id}"): COORDINATORS,
    ("DELETE", "/api/rules/{rule_id}"): COORDINATORS,
    # partners' addresses and webhook URLs: for whoever manages who is told what
    ("GET", "/api/partners"): COORDINATORS,
    ("GET", "/api/partners/{partner_ref}"): COORDINATORS,
    ("PUT", "/api/partners/{partner_ref}"): COORDINATORS,
    ("POST", "/api/partners/{partner_ref}/webhook-secret"): COORDINATORS,
    ("DELETE", "/api/partners/{partner_ref}"): COORDINATORS,
}
