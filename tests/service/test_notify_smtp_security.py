"""E-mail over an encrypted, authenticated SMTP session, as a production relay requires: STARTTLS or
TLS from the first byte, a login from settings, and the relay's certificate checked."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.testing.redis_server import free_port
from shared.testing.smtp_sink import SmtpSink
from tests.service.test_notify_delivery import (  # noqa: F401  (fixtures)
    COORDINATOR,
    admitted,
    hooks,
    mails_to,
    notify_database,
    postgres_for_notify,
    start_notify,
    until,
)

pytestmark = pytest.mark.parametrize("store", ["sqlite"])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1; notify trusts it through NOTIFY_SMTP_CA_FILE."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return str(directory / "cert.pem"), server


@pytest.mark.parametrize("mode", ["starttls", "tls"])
async def test_mail_goes_over_an_encrypted_authenticated_session(start_notify, certificate, mode, tmp_path):
    ca_file, server_context = certificate
    options = {"tls_context": server_context, "require_starttls": True} if mode == "starttls" else {"ssl_context": server_context}
    with SmtpSink(free_port(), tmp_path / "relay", users={"notify": "correct horse"}, **options) as relay:
        notify = await start_notify(smtp_port=relay.port, smtp_starttls=mode == "starttls", smtp_tls=mode == "tls",
                                    smtp_ca_file=ca_file, smtp_username="notify", smtp_password="correct horse")
        await notify.publish(admitted(f"P-{mode}"))
        mails = await until(lambda: mails_to(relay, COORDINATOR))
        assert mails and f"P-{mode}" in mails[0]["Subject"]
        assert [{k: t[k] for k in ("tls", "user")} for t in relay.mailbox.transports] == [{"tls": True, "user": "notify"}]


async def test_a_refused_login_is_a_permanent_failure_and_the_relay_gets_nothing(start_notify, certificate, tmp_path):
    ca_file, server_context = certificate
    with SmtpSink(free_port(), tmp_path / "relay", users={"notify": "correct horse"}, tls_context=server_context,
                  require_starttls=True) as relay:
        notify = await start_notify(smtp_port=relay.port, smtp_starttls=True, smtp_ca_file=ca_file,
                                    smtp_username="notify", smtp_password="wrong", alert_staff_on_failure=False)
        await notify.publish(admitted("P-login"))
        failed = await until(lambda: _failed(notify))
        assert failed and failed["reason_code"] == "smtp_535" and failed["attempts"] == 1
        assert relay.mailbox.messages == []


async def test_an_unverifiable_relay_certificate_gets_no_mail(start_notify, certificate, tmp_path):
    _ca_file, server_context = certificate
    with SmtpSink(free_port(), tmp_path / "relay", tls_context=server_context, require_starttls=True) as relay:
        notify = await start_notify(smtp_port=relay.port, smtp_starttls=True, max_attempts=2)
        await notify.publish(admitted("P-untrusted"))
        failed = await until(lambda: _failed(notify))
        assert failed and failed["reason_code"] == "exhausted" and failed["attempts"] == 2
        assert relay.mailbox.messages == []


async def _failed(notify):
    rows = [d for d in await notify.deliveries(status="failed") if d["cause_event_type"] == "PersonAdmitted"]
    return rows[0] if rows else None
