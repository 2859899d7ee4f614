"""`city311 mail ...`: look at an email the way the intake will see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mail.parse import DEFAULT_MAX_ATTACHMENT_BYTES, parse_message

__all__ = ["register"]

_PREVIEW_CHARS = 2000


def register(app: typer.Typer) -> None:
    """Add the ``mail`` sub-command group to ``app``."""
    mail_app = typer.Typer(no_args_is_help=True, help="The email channel.")

    @mail_app.command("parse")
    def parse(
        file: Path = typer.Argument(..., help="an RFC 822 message (.eml)"),  # noqa: B008
        as_json: bool = typer.Option(False, "--json", help="print the JSON shape"),
        max_attachment_bytes: int = typer.Option(
            DEFAULT_MAX_ATTACHMENT_BYTES, "--max-attachment-bytes", min=0,
            help="attachments larger than this are listed as refused",
        ),
    ) -> None:
        """Parse FILE.eml: headers, body text, the new reply, loop and bounce flags."""
        try:
            raw = file.read_bytes()
        except OSError as exc:
            typer.echo(f"error: cannot read {file}: {exc.strerror or type(exc).__name__}",
                       err=True)
            # SystemExit, not typer.Exit: click swallows Exit's code when standalone_mode=False.
            raise SystemExit(2) from None
        parsed = parse_message(raw, max_attachment_bytes=max_attachment_bytes)
        out = parsed.as_json()
        if as_json:
            typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
            return
        typer.echo(_summary(out))

    app.add_typer(mail_app, name="mail")


def _summary(out: dict[str, Any]) -> str:
    flags = []
    if out["is_auto_reply"]:
        flags.append("automatic (" + "; ".join(out["auto_reply_reasons"]) + ")")
    if out["is_bounce"]:
        flags.append(f"bounce of {', '.join(out['bounced_message_ids']) or 'unknown message'}"
                     f" to {out['bounced_recipient'] or 'unknown recipient'}")
    sender = out["from"] or "(unknown)"
    if out["from_name"]:
        sender = f"{out['from_name']} <{sender}>"
    lines = [
        f"From:        {sender}",
        f"To:          {', '.join(out['to']) or '(none)'}",
        f"Subject:     {out['subject']}",
        f"Date:        {out['date'] or '(unknown)'}",
        f"Message-ID:  {out['message_id'] or '(none)'}",
    ]
    if out["in_reply_to"] or out["references"]:
        lines.append(f"In-Reply-To: {out['in_reply_to'] or '(none)'}"
                     f"  ({len(out['references'])} references)")
    lines.append(f"Flags:       {', '.join(flags) or 'none (a person wrote this)'}")
    for attachment in out["attachments"]:
        state = f"refused: {attachment['refused_reason']}" if attachment["refused"] else "kept"
        lines.append(f"Attachment:  {attachment['filename']} ({attachment['content_type']}, "
                     f"{attachment['size']} bytes, {state})")
    for problem in out["problems"]:
        lines.append(f"Problem:     {problem}")
    reply = out["reply_text"]
    if len(reply) > _PREVIEW_CHARS:
        reply = reply[:_PREVIEW_CHARS] + " [...]"
    lines += ["", "Reply:", reply or "(nothing new)"]
    return "\n".join(lines)
