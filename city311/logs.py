"""Logging for the entry points: one line per record, with secrets and addresses masked."""

from __future__ import annotations

import logging
import sys

from desk.redact import redact

__all__ = ["RedactingFilter", "configure_logging", "redact"]

class RedactingFilter(logging.Filter):
    """Masks tokens, configured secrets and email addresses in every record it passes."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message, self.secrets)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info),
                                     self.secrets)
            record.exc_info = None
        record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO", secrets: tuple[str, ...] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiosqlite").setLevel(logging.CRITICAL)  # its own tracebacks; we report
    for noisy in ("sqlalchemy.engine", "asyncio", "httpx", "aioimaplib",
                  "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
