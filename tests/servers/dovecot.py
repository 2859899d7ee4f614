"""A throwaway Dovecot (IMAP + LMTP) on free loopback ports, for tests.

The config, the passwd file, the maildir and the logs live in one temp dir. Mail arrives as
from a real MTA (LMTP over TCP) or by IMAP APPEND. Dovecot 2.3 syntax; a 2.4 server is detected
and reported as unavailable (it skips on a laptop and fails in CI).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers.certs import require_openssl, self_signed_cert
from tests.support import unavailable

__all__ = ["DovecotServer", "dovecot_version", "free_port"]

MAIL_USER = "intake@311.test"
MAIL_PASSWORD = "intake-secret"  # noqa: S105 - a throwaway test server


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dovecot_version() -> tuple[int, int] | None:
    binary = shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists(
        "/usr/sbin/dovecot") else None)
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10,
                             check=False).stdout
    except OSError:
        return None
    match = re.match(r"(\d+)\.(\d+)", out.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


_CONFIG_23 = """\
# Generated for a test run; everything lives under {root}.
base_dir = {root}/run
state_dir = {root}/state
instance_name = city311-test-{imap_port}
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = {ssl}
{ssl_lines}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:{root}/mail/%n
mail_uid = {mail_uid}
mail_gid = {mail_gid}
{capability_line}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/mail/%n allow_all_users=yes
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
protocol lmtp {{
  postmaster_address = postmaster@311.test
}}
"""

# Dovecot's default capability list minus IDLE, to test the polling fallback.
_NO_IDLE = ("imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT "
            "SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND "
            "URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 "
            "CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
            "BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY STATUS=SIZE SAVEDATE LITERAL+ "
            "NOTIFY SPECIAL-USE")


@dataclass
class DovecotServer:
    """A running Dovecot. ``start()`` it, ``stop()`` it; the temp dir goes with it."""

    root: Path
    conf: Path
    imap_port: int
    imaps_port: int
    lmtp_port: int
    tls: bool
    idle: bool
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"
    user: str = MAIL_USER
    password: str = MAIL_PASSWORD
    cert: Path | None = None
    _env: dict[str, str] = field(default_factory=dict)

    # ---- lifecycle ----------------------------------------------------------------------

    @classmethod
    def start(cls, *, tls: bool = False, idle: bool = True) -> DovecotServer:
        """Start a fresh server; calls ``unavailable()`` when Dovecot cannot be had."""
        version = dovecot_version()
        if version is None:
            unavailable("dovecot is not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
        assert version is not None
        if version >= (2, 4):
            unavailable(f"Dovecot {version[0]}.{version[1]}: this fixture writes 2.3 config")
        if tls:
            require_openssl()
        # Not pytest's tmp_path: it is 0700, and Dovecot's mail processes run as another user.
        root = Path(tempfile.mkdtemp(prefix="city311-dovecot-"))
        root.chmod(0o755)
        server = cls(root=root, conf=root / "dovecot.conf", imap_port=free_port(),
                     imaps_port=free_port(), lmtp_port=free_port(), tls=tls, idle=idle)
        try:
            server._write_config()
            server._launch()
        except BaseException:
            server.stop()
            raise
        return server

    def _write_config(self) -> None:
        root = self.root
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(mode=0o755)
        if os.geteuid() == 0:
            mail_uid = mail_gid = 65534
            internal_user, internal_group, login_user = "dovecot", "dovecot", "dovenull"
            import pwd

            try:
                pwd.getpwnam("dovecot")
                pwd.getpwnam("dovenull")
            except KeyError:  # Dovecot not from the Debian package: use nobody throughout
                internal_user, internal_group, login_user = "nobody", "nogroup", "nobody"
            os.chown(root / "mail", mail_uid, mail_gid)
        else:
            import grp
            import pwd

            mail_uid, mail_gid = os.getuid(), os.getgid()
            internal_user = login_user = pwd.getpwuid(mail_uid).pw_name
            internal_group = grp.getgrgid(mail_gid).gr_name
        ssl_lines = ""
        if self.tls:
            self.cert, key = self_signed_cert(root)
            ssl_lines = f"ssl_cert = <{self.cert}\nssl_key = <{key}\n"
        (root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}::::::\n")
        self.conf.write_text(_CONFIG_23.format(
            root=root, ssl="yes" if self.tls else "no", ssl_lines=ssl_lines,
            internal_user=internal_user, internal_group=internal_group, login_user=login_user,
            mail_uid=mail_uid, mail_gid=mail_gid,
            capability_line="" if self.idle else _NO_IDLE,
            imap_port=self.imap_port, imaps_port=self.imaps_port if self.tls else 0,
            lmtp_port=self.lmtp_port,
        ))

    def _launch(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        self.process = subprocess.Popen(  # noqa: S603
            [binary, "-F", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if (
                    self.process.stderr) else ""
                raise RuntimeError(f"dovecot exited: {err.strip()} {self.log()[-2000:]}")
            if _greets(self.host, self.imap_port) and _greets(self.host, self.lmtp_port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dovecot did not come up: {self.log()[-2000:]}")

    def restart(self) -> None:
        """Stop the server and start it again on the same ports with the same mail (clients
        see their connections drop)."""
        self._terminate()
        self._launch()

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def stop(self) -> None:
        self._terminate()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- mail in ------------------------------------------------------------------------

    def deliver(self, raw: bytes, *, sender: str = "sender@example.org",
                recipient: str | None = None) -> None:
        """Deliver one message over LMTP, as an MTA would."""
        self.deliver_many([raw], sender=sender, recipient=recipient)

    def deliver_many(self, raws: Iterable[bytes], *, sender: str = "sender@example.org",
                     recipient: str | None = None) -> None:
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=30) as lmtp:
            for raw in raws:
                refused = lmtp.sendmail(sender, [recipient or self.user], raw)
                if refused:
                    raise RuntimeError(f"LMTP refused: {refused}")

    def imap(self) -> imaplib.IMAP4:
        """A logged-in stdlib IMAP client (for arranging and asserting, not for the code)."""
        client = imaplib.IMAP4(self.host, self.imap_port, timeout=30)
        client.login(self.user, self.password)
        return client

    def append(self, raw: bytes, mailbox: str = "INBOX", flags: str = "") -> None:
        client = self.imap()
        try:
            status, _ = client.append(mailbox, f"({flags})" if flags else None, None, raw)
            if status != "OK":
                raise RuntimeError(f"APPEND failed: {status}")
        finally:
            client.logout()

    def create_mailbox(self, name: str) -> None:
        client = self.imap()
        try:
            client.create(name)
        finally:
            client.logout()

    def flags(self, mailbox: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in ``mailbox``."""
        client = self.imap()
        try:
            client.select(mailbox, readonly=True)
            status, data = client.uid("FETCH", "1:*", "(FLAGS)")
            found: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                match = re.search(rb"UID (\d+).*FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\).*UID (\d+)",
                                  item)
                if match:
                    uid = int(match.group(1) or match.group(4))
                    flags = (match.group(2) or match.group(3) or b"").decode()
                    found[uid] = set(flags.split())
            return found
        finally:
            client.logout()

    def count(self, mailbox: str = "INBOX") -> int:
        client = self.imap()
        try:
            status, data = client.select(mailbox, readonly=True)
            return int(data[0] or 0) if status == "OK" else 0
        finally:
            client.logout()

    def set_flags(self, uids: Iterable[int], op: str, flags: str,
                  mailbox: str = "INBOX") -> None:
        client = self.imap()
        try:
            client.select(mailbox)
            client.uid("STORE", ",".join(map(str, uids)), op, f"({flags})")
        finally:
            client.logout()

    # ---- administration -----------------------------------------------------------------

    def doveadm(self, *args: str) -> str:
        binary = shutil.which("doveadm") or "/usr/bin/doveadm"
        result = subprocess.run([binary, "-c", str(self.conf), *args], capture_output=True,
                                text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def uidvalidity(self, mailbox: str = "INBOX") -> int:
        out = self.doveadm("-f", "flow", "mailbox", "status", "-u", self.user, "uidvalidity",
                           mailbox)
        match = re.search(r"uidvalidity=(\d+)", out)
        assert match, out
        return int(match.group(1))

    def renumber(self, mailbox: str = "INBOX") -> int:
        """Throw the mailbox away and recreate it empty under a new UIDVALIDITY, so UIDs start
        from 1 again (what a restored or migrated server does). Returns the new UIDVALIDITY."""
        old = self.uidvalidity(mailbox)
        self.doveadm("expunge", "-u", self.user, "mailbox", mailbox, "all")
        maildir = self.root / "mail" / self.user.split("@")[0]
        for name in os.listdir(maildir):
            if name.startswith("dovecot-uidlist") or name.startswith("dovecot.index"):
                (maildir / name).unlink()
        self.doveadm("force-resync", "-u", self.user, mailbox)
        self.doveadm("mailbox", "update", "-u", self.user, "--uid-validity", str(old + 1000),
                     mailbox)
        return self.uidvalidity(mailbox)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's self-signed certificate."""
        assert self.cert is not None, "started without tls"
        return ssl.create_default_context(cafile=str(self.cert))

    def mail_settings(self, **overrides: Any) -> dict[str, Any]:
        """MailSettings fields for this server's IMAP side."""
        values: dict[str, Any] = {
            "address": "desk@311.test", "imap_host": self.host, "imap_port": self.imap_port,
            "imap_security": "plain", "imap_user": self.user, "imap_password": self.password,
        }
        values.update(overrides)
        return values


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.settimeout(2)
            return bool(sock.recv(64))
    except OSError:
        return False
