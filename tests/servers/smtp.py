"""An aiosmtpd SMTP server on a free loopback port that records what it receives.

``server.refuse("451 4.3.0 try later")`` answers the next DATA (or every DATA with
``times=None``) with that reply instead of accepting; ``stop()`` and ``start()`` take it down
and bring it back on the same port, for outage tests.
"""

from __future__ import annotations

import email
import email.policy
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.servers.dovecot import free_port

__all__ = ["Received", "RecordingHandler", "SmtpServer"]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class RecordingHandler:
    received: list[Received] = field(default_factory=list)
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
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                          bytes(raw)))
        return "250 2.0.0 Message accepted"


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    def start(self) -> SmtpServer:
        if self._controller is None:
            self._controller = Controller(self.handler, hostname=self.host, port=self.port,
                                          decode_data=False, ready_timeout=10)
            self._controller.start()
        return self

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
        values: dict[str, Any] = {"smtp_host": self.host, "smtp_port": self.port,
                                  "smtp_security": "plain", "address": "desk@311.test"}
        values.update(overrides)
        return values
