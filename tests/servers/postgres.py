"""A private, throwaway PostgreSQL server for tests that stop and restart the database.

Debian's binaries (``/usr/lib/postgresql/*/bin``) create a cluster in a temp dir and run it on
a free loopback port with trust authentication. PostgreSQL refuses to run as root, so under
root the cluster belongs to the ``postgres`` system user and every command runs through
``runuser``. The machine's shared server is never touched.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.servers.dovecot import free_port
from tests.support import unavailable

__all__ = ["PostgresServer", "postgres_bin_dir"]

SUPERUSER = "postgres"
# Durability is not what these tests are about; a restart still keeps committed data.
_OPTIONS = ("-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off "
            "-c synchronous_commit=off -c max_connections=60 -c shared_buffers=16MB")


def postgres_bin_dir() -> Path | None:
    """The newest installed server's bin dir, or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    return found[-1].parent if found else None


@dataclass
class PostgresServer:
    """``start()`` one; ``stop_server()``/``start_server()``/``restart()`` it while clients
    run; ``destroy()`` it at the end (the data dir goes with it)."""

    root: Path
    port: int
    bin_dir: Path
    run_as: str | None  # the system user that owns the cluster when we are root

    @classmethod
    def start(cls) -> PostgresServer:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            unavailable("PostgreSQL server binaries not found (apt-get install postgresql)")
        assert bin_dir is not None
        run_as = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError:
                unavailable("running as root and there is no 'postgres' user to run initdb as")
            if shutil.which("runuser") is None:
                unavailable("runuser is needed to run PostgreSQL as the 'postgres' user")
            run_as = SUPERUSER
        root = Path(tempfile.mkdtemp(prefix="city311-postgres-"))
        server = cls(root=root, port=free_port(), bin_dir=bin_dir, run_as=run_as)
        try:
            server._init()
            server.start_server()
        except BaseException:
            server.destroy()
            raise
        return server

    # ---- commands -----------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                check=False, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): "
                               f"{result.stderr.strip()[-1500:]} {self.log()[-1500:]}")
        return result

    def _init(self) -> None:
        (self.root / "sock").mkdir()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.root, self.root / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")

    @property
    def data(self) -> Path:
        return self.root / "data"

    def start_server(self) -> None:
        """Start (or start again after :meth:`stop_server`) on the same port and data."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "postgres.log"), "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.root / 'sock'} {_OPTIONS}", "start")

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, dropping every client connection; ``immediate`` is a crash."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", "60", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop_server(mode)
        self.start_server()

    @property
    def running(self) -> bool:
        result = subprocess.run([str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p",
                                 str(self.port)], capture_output=True, timeout=10, check=False)
        return result.returncode == 0

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.stop_server("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- databases ----------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create a database; returns its plain ``postgresql://`` URL."""
        self._run(str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", SUPERUSER, name)
        return self.url(name)
