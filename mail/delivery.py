"""The email channel's sending side: an outbox item goes out over SMTP (aiosmtplib).

The outbox dispatcher owns retries and exactly-once bookkeeping; this module renders, sends
once, and says whether a failure is worth retrying: connection trouble, timeouts and 4xx
replies raise :class:`TransientDeliveryError`, a 5xx reply :class:`PermanentDeliveryError`.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

import aiosmtplib

from desk.errors import PermanentDeliveryError, TransientDeliveryError
from desk.ports import DeliveryReceipt, OutboundItem
from desk.settings import MailSettings
from mail.compose import compose, recipients_of

__all__ = ["EmailChannel"]

log = logging.getLogger(__name__)

SMTP_TIMEOUT = 30.0


class EmailChannel:
    """:class:`desk.ports.Channel` for email."""

    name = "email"

    def __init__(self, settings: MailSettings, *, tls_context: ssl.SSLContext | None = None,
                 timeout: float = SMTP_TIMEOUT) -> None:
        self.settings = settings
        # A custom context trusts a private CA (tests, an internal relay); None: system CAs.
        self.tls_context = tls_context
        self.timeout = timeout

    async def deliver(self, item: OutboundItem) -> DeliveryReceipt:
        settings = self.settings
        message = compose(item, address=settings.address, from_name=settings.from_name)
        message_id = str(message["Message-ID"])
        recipients = recipients_of(item.payload.get("to"))
        try:
            errors, response = await aiosmtplib.send(
                message, sender=settings.address, recipients=recipients,
                **self._connection(),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise _by_code(min(codes) if codes else 550, "every recipient was refused",
                           exc) from exc
        except aiosmtplib.SMTPAuthenticationError as exc:
            # Wrong credentials are fixed in the settings; keep the row until they are.
            raise TransientDeliveryError(f"SMTP authentication failed ({exc.code})",
                                         channel=self.name, code=exc.code) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _by_code(exc.code, exc.message, exc) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            # Refused or dropped connections, timeouts, TLS trouble: the server may come back.
            raise TransientDeliveryError(f"SMTP unavailable: {type(exc).__name__}: {exc}",
                                         channel=self.name) from exc
        if errors:
            # Some recipients were refused and at least one accepted: it went out.
            log.warning("outbox %s: %d of %d recipients refused", item.id, len(errors),
                        len(recipients), extra={"case": item.case_ref})
        log.info("sent %s for %s as %s", item.kind, item.case_ref or "-", message_id,
                 extra={"case": item.case_ref})
        return DeliveryReceipt(external_id=message_id, detail={
            "response": response, "refused": len(errors), "recipients": len(recipients)})

    def _connection(self) -> dict[str, Any]:
        settings = self.settings
        options: dict[str, Any] = {
            "hostname": settings.smtp_host, "port": settings.smtp_port, "timeout": self.timeout,
            "use_tls": settings.smtp_security == "tls",
            # False, not None: "plain" must not upgrade opportunistically.
            "start_tls": settings.smtp_security == "starttls",
        }
        if settings.smtp_security != "plain" and self.tls_context is not None:
            options["tls_context"] = self.tls_context
        if settings.smtp_user:
            options["username"] = settings.smtp_user
            options["password"] = settings.smtp_password
        return options


def _by_code(code: int, text: str, exc: Exception) -> TransientDeliveryError | \
        PermanentDeliveryError:
    detail = f"SMTP {code}: {text}".strip()
    if 400 <= code < 500:
        return TransientDeliveryError(detail, channel="email", code=code)
    if code >= 500:
        return PermanentDeliveryError(detail, channel="email", code=code)
    return TransientDeliveryError(f"unexpected SMTP reply: {detail}", channel="email", code=code)
