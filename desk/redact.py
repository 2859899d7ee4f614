"""Masking for anything that may reach a log: tokens, secrets and email addresses."""

from __future__ import annotations

import re

__all__ = ["mask_address", "redact"]

_TOKEN = re.compile(r"\bx(?:ox[abprse]|app)-[A-Za-z0-9-]+")
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for secret in secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, "[secret]")
    text = _TOKEN.sub("[token]", text)
    return _EMAIL.sub(r"\1***@\2", text)


def mask_address(address: str | None) -> str | None:
    """``d***@fallriverma.org``: enough for staff to recognise, not enough to leak."""
    if not address or "@" not in address:
        return address
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
