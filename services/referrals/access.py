"""Who may do what in referrals' API (need to see). Enforced by shared.web.enforce_access on every
/api route; tests/service/test_privacy_access.py checks every route against it. The partners'
signed-link pages (/partner/...) need no staff token: the signed link is the partner's key."""

from shared.auth import Role

ADMIN = Role.administrator.value
NOTIFY = "service:notify"  # notify's own token (no role) fetching a partner's link at send time
EVERY_ROLE = frozenset(r.value for r in Role)
CASEWORKERS = frozenset({Role.intake_worker.value, Role.social_coordinator.value, Role.psychologist.value, ADMIN})
COORDINATORS = frozenset({Role.social_coordinator.value, ADMIN})

ACCESS: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/api/directory/vocabulary"): EVERY_ROLE,
    ("GET", "/api/directory/search"): EVERY_ROLE,
    ("GET", "/api/directory/organizations"): EVERY_ROLE,
    ("GET", "/api/directory/organizations/{partner_ref}"): EVERY_ROLE,
    ("GET", "/api/directory/export.json"): EVERY_ROLE,
    ("GET", "/api/directory/export.zip"): EVERY_ROLE,
    ("POST", "/api/directory/import"): COORDINATORS,
    ("POST", "/api/directory/import.zip"): COORDINATORS,
    ("POST", "/api/referrals"): CASEWORKERS,
    ("GET", "/api/referrals"): CASEWORKERS,
    ("GET", "/api/referrals/{referral_ref}"): CASEWORKERS,
    ("POST", "/api/referrals/{referral_ref}/revoke"): CASEWORKERS,
    ("GET", "/api/referrals/{referral_ref}/partner-notice"): COORDINATORS | {NOTIFY},
    ("GET", "/api/referrals/{referral_ref}/partner-link"): COORDINATORS | {NOTIFY},
    ("GET", "/api/followed"): CASEWORKERS,
    ("GET", "/api/people/{person_ref}"): CASEWORKERS,
}
