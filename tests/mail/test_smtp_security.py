"""Sending over secure SMTP against a real aiosmtpd server: STARTTLS with AUTH on a submission
port, implicit TLS, a wrong password, a certificate nobody vouches for, and a server that does
not offer STARTTLS. What the server recorded (TLS version, login, AUTH attempts) is the proof."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from desk.errors import TransientDeliveryError
from desk.ports import OutboundItem
from desk.settings import MailSettings
from mail.delivery import EmailChannel
from tests.mail.conftest import CITY_SENDER, approved_case, mail_settings, make_service, reply_row
from tests.servers import SmtpServer
from tests.support import FakeClock

USER = "desk@311.test"
PASSWORD = "s3cret-Submission-pw"  # noqa: S105 - a throwaway test server
WRONG = "n0t-the-Password-at-all"  # noqa: S105
# aiosmtpd's own logger: the test server's transcript, not the service's logs.
SERVER_LOGGER = "mail.log"
# See tests/servers/smtp.py: aiosmtpd warns when AUTH is required on an implicit-TLS port.
IMPLICIT_AUTH_WARNING = "ignore:Requiring AUTH while not requiring TLS:UserWarning"

ServerFactory = Callable[..., SmtpServer]


@pytest.fixture
def smtp() -> Iterator[ServerFactory]:
    """Start ``SmtpServer(**options)``; every server started is stopped at teardown."""
    started: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        server = SmtpServer(**options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _item() -> OutboundItem:
    return OutboundItem(id=1, kind="reply", channel="email", case_id=1, case_ref="C-2026-0001",
                        idempotency_key="reply:1:1",
                        payload={"to": CITY_SENDER, "subject": "Bond", "text": "Answer."})


def _channel(server: SmtpServer, *, trust: bool = True, **overrides: Any) -> EmailChannel:
    """A channel logging in as USER; ``trust``: with a context that trusts the server's cert."""
    settings = mail_settings(None, server, **{"smtp_user": USER, "smtp_password": PASSWORD,
                                              **overrides})
    context = server.ssl_context() if trust and server.cert is not None else None
    return EmailChannel(settings, tls_context=context, timeout=10)


def _submission(smtp: ServerFactory, **options: Any) -> SmtpServer:
    """A port-587 style server: STARTTLS first, then AUTH, then mail."""
    return smtp(tls="starttls", require_starttls=True, users={USER: PASSWORD}, **options)


def _service_logs(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records
                     if record.name != SERVER_LOGGER)


# ---- the secure paths work ------------------------------------------------------------------


async def test_starttls_with_auth_sends_a_reply_through_the_outbox(
    db_url: str, tmp_path: Path, smtp: ServerFactory, live_clock: FakeClock,
) -> None:
    server = _submission(smtp)
    # The test's own CA, given as an operator would: MAIL_CA_FILE.
    service = await make_service(
        db_url, tmp_path, mail_settings(None, server, smtp_user=USER, smtp_password=PASSWORD,
                                        ca_file=server.cert), live_clock)
    try:
        case = await approved_case(service, live_clock)
        assert (await service.dispatcher.run_once()).sent == 1
        [delivered] = server.received
        assert delivered.tls is not None and delivered.tls.startswith("TLSv1.")
        assert delivered.login == USER
        assert delivered.rcpt_tos == [CITY_SENDER]
        assert f"[{case.ref}]" in str(delivered.message["Subject"])
        # The only AUTH the server saw came after STARTTLS, and it succeeded.
        assert [(a.login, a.success) for a in server.auth_attempts] == [(USER, True)]
        assert all(a.tls is not None for a in server.auth_attempts)
        row = await reply_row(service)
        assert row.status == "sent" and row.external_id == delivered.message["Message-ID"]
    finally:
        await service.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_starttls_authenticates_with_either_mechanism(
    smtp: ServerFactory, mechanism: str,
) -> None:
    server = _submission(smtp, mechanisms=[mechanism])
    receipt = await _channel(server).deliver(_item())
    [delivered] = server.received
    assert (delivered.login, delivered.message["Message-ID"]) == (USER, receipt.external_id)
    assert delivered.tls is not None
    [attempt] = server.auth_attempts
    assert (attempt.mechanism, attempt.success) == (mechanism, True)
    assert attempt.tls is not None


@pytest.mark.filterwarnings(IMPLICIT_AUTH_WARNING)
async def test_implicit_tls_delivers(smtp: ServerFactory) -> None:
    server = smtp(tls="implicit", users={USER: PASSWORD})
    channel = _channel(server)
    assert channel.settings.smtp_security == "tls"
    receipt = await channel.deliver(_item())
    [delivered] = server.received
    assert delivered.message["Message-ID"] == receipt.external_id
    assert delivered.tls is not None and delivered.tls.startswith("TLSv1.")
    assert delivered.login == USER


# ---- and fail closed ------------------------------------------------------------------------


async def test_wrong_password_is_an_auth_error_and_never_logged(
    db_url: str, tmp_path: Path, smtp: ServerFactory, live_clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = _submission(smtp)
    channel = _channel(server, smtp_password=WRONG)
    with pytest.raises(TransientDeliveryError) as refused:
        await channel.deliver(_item())
    # Transient on purpose (mail/delivery.py): credentials get fixed and the row then goes out.
    assert refused.value.code == 535
    assert "authentication failed" in str(refused.value)

    service = await make_service(
        db_url, tmp_path, mail_settings(None, server, smtp_user=USER, smtp_password=WRONG),
        live_clock)
    service.channels["email"] = EmailChannel(service.settings.mail,
                                             tls_context=server.ssl_context())
    try:
        await approved_case(service, live_clock)
        result = await service.dispatcher.run_once()
        assert (result.sent, result.retried, result.failed) == (0, 1, 0)
        row = await reply_row(service)
        assert row.status == "pending" and "535" in (row.last_error or "")
        assert WRONG not in (row.last_error or "")
    finally:
        await service.close()

    assert server.received == []
    attempts = server.auth_attempts
    assert attempts and all(not a.success and a.login == USER for a in attempts)
    assert all(a.tls is not None for a in attempts)  # the password only went over TLS
    logs = _service_logs(caplog)
    assert "will retry" in logs  # the dispatcher did log the failure ...
    for secret in (WRONG, base64.b64encode(WRONG.encode()).decode()):
        assert secret not in logs  # ... without the password
        assert secret not in str(refused.value)


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_an_untrusted_certificate_is_refused_before_anything_is_sent(
    smtp: ServerFactory, tls: str,
) -> None:
    # A server that would take the password and the mail in clear text too: whatever the client
    # sent after a failed handshake would show up here.
    server = smtp(tls=tls, users={USER: PASSWORD}, auth_required=False, auth_require_tls=False)
    channel = _channel(server, trust=False)  # system CAs only: the self-signed cert fails
    with pytest.raises(TransientDeliveryError) as refused:
        await channel.deliver(_item())
    assert "certificate verify failed" in str(refused.value)
    assert server.received == []
    assert server.auth_attempts == []


async def test_starttls_setting_never_falls_back_to_plain_text(smtp: ServerFactory) -> None:
    # No STARTTLS on offer, and AUTH and mail accepted in clear text.
    server = smtp(users={USER: PASSWORD}, auth_required=False, auth_require_tls=False)
    with pytest.raises(TransientDeliveryError) as refused:
        await _channel(server, smtp_security="starttls").deliver(_item())
    assert "STARTTLS" in str(refused.value)
    assert server.received == []
    assert server.auth_attempts == []
    # The same server takes clear-text mail from a client configured for it, so the refusal
    # above was the client's.
    plain = EmailChannel(mail_settings(None, server, smtp_security="plain"), timeout=10)
    await plain.deliver(_item())
    [delivered] = server.received
    assert (delivered.tls, delivered.login) == (None, None)


def test_a_ca_file_that_is_not_a_certificate_is_a_clear_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate\n")
    with pytest.raises(ValidationError, match="cannot load certificates from"):
        MailSettings(ca_file=broken)
    with pytest.raises(ValidationError, match="cannot load certificates from"):
        MailSettings(ca_file=tmp_path / "missing.pem")
    # Set but empty, as templated deployments write it: the system CAs.
    assert MailSettings(ca_file="").ca_file is None
