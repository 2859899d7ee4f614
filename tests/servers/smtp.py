"""An aiosmtpd SMTP server on a free loopback port that records what it receives.

``server.refuse("451 4.3.0 try later")`` answers the next DATA (or every DATA with
``times=None``) with that reply instead of accepting; ``stop()`` and ``start()`` take it down
and bring it back on the same port, for outage tests.

Secure variants: ``SmtpServer(tls="starttls")`` offers STARTTLS (``require_starttls=True``
refuses everything else first), ``tls="implicit"`` speaks TLS from the first byte (port 465
style); both use a self-signed certificate that ``ssl_context()`` trusts. ``users={...}``
offers AUTH (PLAIN and LOGIN) with those passwords, by default required and only after TLS;
``auth_require_tls=False, auth_required=False`` makes a server that takes a password in clear
text, to show a client never sends one. Each message records the TLS version and login it came
in under, and every AUTH attempt is recorded.

aiosmtpd 1.4 does not count implicit TLS as TLS for AUTH (aio-libs/aiosmtpd#281), so an
implicit-TLS server passes ``auth_require_tls=False``; with ``auth_required`` aiosmtpd then
warns, and a test of it must ignore that UserWarning.
"""

from __future__ import annotations

import email
import email.policy
import ssl
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers.certs import require_openssl, self_signed_cert
from tests.servers.dovecot import free_port

__all__ = ["AuthAttempt", "Received", "RecordingHandler", "SmtpServer"]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    # The session it came in on: TLS version ("TLSv1.3") or None for clear text; the login.
    tls: str | None = None
    login: str | None = None

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class AuthAttempt:
    mechanism: str
    login: str
    success: bool
    tls: str | None


def _tls_version(server: Any) -> str | None:
    """The TLS version of an aiosmtpd session (after STARTTLS or implicit), None if clear."""
    transport = server.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return str(ssl_object.version()) if ssl_object is not None else None


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
    auth_attempts: list[AuthAttempt] = field(default_factory=list)
    # Replies to give instead of accepting DATA, used first to last; None: refuse forever.
    refusals: list[str] = field(default_factory=list)
    refuse_always: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            if self.refuse_always:
                return self.refuse_always
            if self.refusals:
                return self.refusals.pop(0)
            raw = envelope.original_content or envelope.content
            login = session.auth_data if session.authenticated else None
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(raw), tls=_tls_version(server), login=login))
        return "250 2.0.0 Message accepted"


class SmtpServer:
    def __init__(self, port: int | None = None, *,
                 tls: Literal["starttls", "implicit"] | None = None,
                 require_starttls: bool = False, users: dict[str, str] | None = None,
                 auth_required: bool = True, auth_require_tls: bool = True,
                 mechanisms: Iterable[str] = ("PLAIN", "LOGIN")) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.handler = RecordingHandler()
        self.tls = tls
        self.require_starttls = require_starttls
        self.users = dict(users or {})
        self.auth_required = auth_required
        self.auth_require_tls = auth_require_tls
        self.mechanisms = {m.upper() for m in mechanisms}
        self.cert: Path | None = None
        self._key: Path | None = None
        self._certdir: tempfile.TemporaryDirectory[str] | None = None
        if tls is not None:
            require_openssl()
            self._certdir = tempfile.TemporaryDirectory(prefix="city311-smtp-")
            self.cert, self._key = self_signed_cert(Path(self._certdir.name))
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        if self._controller is None:
            options: dict[str, Any] = {}
            if self.tls is not None:
                server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                server_context.load_cert_chain(str(self.cert), str(self._key))
                key = "ssl_context" if self.tls == "implicit" else "tls_context"
                options[key] = server_context
                options["require_starttls"] = self.require_starttls
            if self.users:
                options.update(
                    authenticator=self._authenticate, auth_required=self.auth_required,
                    # Implicit TLS is TLS, though aiosmtpd cannot tell (see the docstring).
                    auth_require_tls=self.auth_require_tls and self.tls != "implicit",
                    auth_exclude_mechanism=[m for m in ("PLAIN", "LOGIN")
                                            if m not in self.mechanisms])
            self._controller = Controller(self.handler, hostname=self.host, port=self.port,
                                          decode_data=False, ready_timeout=10, **options)
            self._controller.start()
        return self

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace")
        expected = self.users.get(login)
        success = expected is not None and expected.encode() == auth_data.password
        with self.handler.lock:
            self.handler.auth_attempts.append(AuthAttempt(mechanism, login, success,
                                                          _tls_version(server)))
        # handled=False: aiosmtpd answers the 235 / 535 itself.
        return AuthResult(success=success, handled=False, auth_data=login if success else None)

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self.handler.lock:
            return list(self.handler.auth_attempts)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        assert self.cert is not None, "started without tls"
        return ssl.create_default_context(cafile=str(self.cert))

    def refuse(self, reply: str, *, times: int | None = 1) -> None:
        """Answer DATA with ``reply`` (e.g. ``"451 4.3.0 busy"``) ``times`` times, or always."""
        with self.handler.lock:
            if times is None:
                self.handler.refuse_always = reply
            else:
                self.handler.refusals.extend([reply] * times)

    def accept(self) -> None:
        with self.handler.lock:
            self.handler.refuse_always = None
            self.handler.refusals.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` messages arrived (for tests that run the sender elsewhere)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return self.received

    def mail_settings(self, **overrides: Any) -> dict[str, Any]:
        """MailSettings fields for this server's SMTP side."""
        security = {None: "plain", "starttls": "starttls", "implicit": "tls"}[self.tls]
        values: dict[str, Any] = {"smtp_host": self.host, "smtp_port": self.port,
                                  "smtp_security": security, "address": "desk@311.test"}
        values.update(overrides)
        return values
