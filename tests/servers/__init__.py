"""Real servers for tests: Dovecot (IMAP + LMTP) and an aiosmtpd SMTP server.

Use them as classes (``DovecotServer.start(...)``, ``SmtpServer()``) or through the pytest
fixtures in ``tests/mail/conftest.py``.
"""

from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.smtp import RecordingHandler, SmtpServer

__all__ = ["DovecotServer", "RecordingHandler", "SmtpServer", "free_port"]
