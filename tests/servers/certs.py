"""A throwaway TLS certificate for the loopback test servers, made with openssl at test time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support import unavailable

__all__ = ["require_openssl", "self_signed_cert"]


def require_openssl() -> None:
    """Skip (fail in CI) when there is no openssl to make a certificate with."""
    if shutil.which("openssl") is None:
        unavailable("openssl is needed to make a test certificate")


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` (EC P-256, two days) into ``directory`` and return
    them. The certificate names 127.0.0.1 and localhost, so hostname checks pass on loopback;
    it is its own CA: a client trusts it with ``ssl.create_default_context(cafile=cert)``."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key
