"""Notify's pure rules: what a partner may see, when staff alerts go out, retry timing, signatures."""

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from services.notify import domain
from services.notify.domain import ConsentRecord

BRUSSELS = ZoneInfo("Europe/Brussels")
REFERRAL_MADE = {"referral_ref": "RF-1", "person_ref": "P-1", "partner_ref": "ORG-1", "service_category": "legal",
                 "shares_personal_data": True}


def test_a_partner_sees_the_referral_and_codes_but_the_person_only_with_consent():
    stay_ending = {"stay_ref": "S-1", "person_ref": "P-1", "planned_end": "2026-05-02", "days_before": 3}
    assert domain.partner_view(REFERRAL_MADE, disclose_person=False) == {"referral_ref": "RF-1", "service_category": "legal"}
    assert domain.partner_view(REFERRAL_MADE, disclose_person=True)["person_ref"] == "P-1"
    assert domain.partner_view(stay_ending, disclose_person=False) == {}
    with_consent = domain.partner_view(stay_ending, disclose_person=True)
    assert with_consent == {"person_ref": "P-1", "planned_end": "2026-05-02", "days_before": 3}
    # Stay, place and request references, decisions and tracks never reach a partner, consent or not.
    admitted = {"stay_ref": "S-1", "person_ref": "P-1", "place_ref": "PL-7", "request_ref": "R-1",
                "place_kind": "emergency", "decision": "accommodate", "track": "youth", "partner_ref": "ORG-1"}
    assert set(domain.partner_view(admitted, disclose_person=True)) == {"person_ref", "place_kind"}


def test_consent_counts_only_for_that_partner_and_purpose_while_live():
    today = date(2026, 3, 1)
    allows = lambda *records, purposes={"referral"}: domain.consent_allows(  # noqa: E731
        list(records), partner_ref="ORG-1", purposes=purposes, today=today)
    assert allows(ConsentRecord("ORG-1", "referral", None, False))
    assert not allows(ConsentRecord("ORG-2", "referral", None, False))
    assert not allows(ConsentRecord("ORG-1", "research", None, False))
    assert allows(ConsentRecord("ORG-1", "legal", None, False), purposes={"referral", "legal"})
    assert not allows(ConsentRecord("ORG-1", "referral", None, True))
    assert not allows(ConsentRecord("ORG-1", "referral", date(2026, 2, 28), False))
    assert allows(ConsentRecord("ORG-1", "referral", date(2026, 3, 1), False))
    assert not allows()


def test_rule_conditions_match_codes_and_lists_of_codes():
    assert domain.rule_matches({}, {"track": "youth"})
    assert domain.rule_matches({"track": ["minor"]}, {"track": "minor"})
    assert not domain.rule_matches({"track": ["minor"]}, {"track": "youth"})
    assert domain.rule_matches({"needs": ["legal"]}, {"needs": ["accommodation", "legal"]})
    assert not domain.rule_matches({"status": ["revoked"], "reason_code": ["x"]}, {"status": "revoked", "reason_code": None})


def test_channels_follow_the_rule_and_what_the_partner_registered():
    assert domain.channels_for("all", email=True, webhook=True) == ["email", "webhook"]
    assert domain.channels_for("all", email=False, webhook=True) == ["webhook"]
    assert domain.channels_for("all", email=False, webhook=False) == ["email"]  # fails visibly, staff alerted
    assert domain.channels_for("webhook", email=True, webhook=False) == ["webhook"]


@pytest.mark.parametrize("local, expected_end", [
    ("2026-03-10 22:30", "2026-03-11 07:00"),   # evening, window spans midnight
    ("2026-03-11 03:00", "2026-03-11 07:00"),   # small hours
    ("2026-03-11 07:00", None),                 # the window is over
    ("2026-03-11 14:00", None),
    ("2026-03-28 23:00", "2026-03-29 07:00"),   # the night clocks go forward
])
def test_quiet_hours_hold_staff_alerts_until_the_window_ends(local, expected_end):
    now = datetime.fromisoformat(local).replace(tzinfo=BRUSSELS)
    end = domain.quiet_hours_end(now, (time(21), time(7)), BRUSSELS)
    if expected_end is None:
        assert end is None
    else:
        assert end == datetime.fromisoformat(expected_end).replace(tzinfo=BRUSSELS).astimezone(UTC)
    assert domain.quiet_hours_end(now, None, BRUSSELS) is None


def test_a_daytime_quiet_window_works_too():
    window = domain.parse_clock_window("12:00-13:30")
    now = datetime(2026, 3, 11, 12, 15, tzinfo=BRUSSELS)
    assert domain.quiet_hours_end(now, window, BRUSSELS) == datetime(2026, 3, 11, 13, 30, tzinfo=BRUSSELS)


def test_the_next_digest_is_the_next_configured_morning():
    weekdays = domain.parse_weekdays("mon,tue,wed,thu,fri")
    at = time(8)
    wednesday_evening = datetime(2026, 3, 11, 18, 0, tzinfo=BRUSSELS)
    assert domain.next_digest_at(wednesday_evening, at, weekdays, BRUSSELS) == datetime(2026, 3, 12, 8, tzinfo=BRUSSELS)
    wednesday_early = datetime(2026, 3, 11, 6, 0, tzinfo=BRUSSELS)
    assert domain.next_digest_at(wednesday_early, at, weekdays, BRUSSELS) == datetime(2026, 3, 11, 8, tzinfo=BRUSSELS)
    friday_noon = datetime(2026, 3, 13, 12, 0, tzinfo=BRUSSELS)
    assert domain.next_digest_at(friday_noon, at, weekdays, BRUSSELS) == datetime(2026, 3, 16, 8, tzinfo=BRUSSELS)
    exactly_eight = datetime(2026, 3, 12, 8, 0, tzinfo=BRUSSELS)
    assert domain.next_digest_at(exactly_eight, at, weekdays, BRUSSELS) == datetime(2026, 3, 13, 8, tzinfo=BRUSSELS)


def test_bad_schedules_are_refused():
    for bad in ("25:00-07:00", "21:00", "evening"):
        with pytest.raises(ValueError):
            domain.parse_clock_window(bad)
    with pytest.raises(ValueError):
        domain.parse_weekdays("mon,funday")


def test_back_off_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(60.0, 2.0 * 2 ** (attempt - 1))
        for _ in range(20):
            delay = domain.backoff_seconds(attempt, 2.0, 60.0, rng)
            assert ceiling / 2 <= delay <= ceiling
    delays = {round(domain.backoff_seconds(3, 2.0, 60.0, rng), 6) for _ in range(20)}
    assert len(delays) > 1  # jitter: replicas retrying together do not stampede


def test_retry_after_is_read_in_seconds_or_as_a_date_and_honoured():
    now = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
    assert domain.retry_after_seconds("7", now) == 7
    assert domain.retry_after_seconds("Wed, 11 Mar 2026 12:00:30 GMT", now) == 30
    assert domain.retry_after_seconds("soon", now) is None
    assert domain.retry_after_seconds(None, now) is None
    assert domain.next_delay(1, base=0.01, cap=3600, retry_after=30) >= 30
    assert domain.next_delay(1, base=0.01, cap=10, retry_after=30) <= 10  # a partner cannot park us for days


def test_http_and_smtp_answers_are_temporary_or_permanent():
    assert domain.http_outcome(200) == domain.http_outcome(204) == "sent"
    for temporary in (408, 425, 429, 500, 502, 503):
        assert domain.http_outcome(temporary) == "temporary"
    for permanent in (301, 400, 401, 404, 410, 413):
        assert domain.http_outcome(permanent) == "permanent"
    assert domain.smtp_outcome(451) == "temporary" and domain.smtp_outcome(421) == "temporary"
    assert domain.smtp_outcome(550) == "permanent" and domain.smtp_outcome(535) == "permanent"


def test_webhook_signatures_verify_with_the_standardwebhooks_package():
    secret = domain.new_webhook_secret()
    assert domain.valid_webhook_secret(secret)
    body = b'{"type":"ReferralMade","data":{"referral_ref":"RF-1"}}'
    now = int(datetime.now(UTC).timestamp())
    headers = {"webhook-id": "N-abc", "webhook-timestamp": str(now),
               "webhook-signature": domain.webhook_signature(secret, "N-abc", now, body)}
    assert Webhook(secret).verify(body, headers) == {"type": "ReferralMade", "data": {"referral_ref": "RF-1"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(domain.new_webhook_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"RF-1", b"RF-2"), headers)
    stale = now - int(timedelta(minutes=10).total_seconds())
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**headers, "webhook-timestamp": str(stale),
                                      "webhook-signature": domain.webhook_signature(secret, "N-abc", stale, body)})
    assert not domain.valid_webhook_secret("not-a-secret")
    assert not domain.valid_webhook_secret("whsec_c2hvcnQ=")


def test_settings_read_empty_values_as_unset_and_refuse_bad_schedules(monkeypatch):
    from pydantic import ValidationError

    from services.notify.settings import NotifySettings

    monkeypatch.setenv("NOTIFY_SMTP_USERNAME", "")
    monkeypatch.setenv("NOTIFY_SMTP_PASSWORD", "")
    monkeypatch.setenv("NOTIFY_CONSENT_PURPOSES", '["referral", "follow_up"]')
    settings = NotifySettings()
    assert settings.smtp_username is None and settings.smtp_password is None
    assert settings.consent_purposes == ["referral", "follow_up"]
    for bad in ({"quiet_hours": "late"}, {"digest_days": "someday"}, {"staff_language": "de"}):
        with pytest.raises(ValidationError):
            NotifySettings(**bad)
