"""`city311 mail parse`, driven through typer's CliRunner on an app built here."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from city311 import cmd_mail
from tests.mail.mail_test_support import DATA

GMAIL = DATA / "eml" / "gmail_reply.eml"


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A root so that `mail` is a sub-command, as in the real CLI."""

    cmd_mail.register(app)
    return app


def test_parse_json_shape() -> None:
    result = CliRunner().invoke(_app(), ["mail", "parse", str(GMAIL), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) >= {"message_id", "in_reply_to", "references", "from", "to", "subject",
                        "date", "text", "reply_text", "is_auto_reply", "is_bounce",
                        "attachments"}
    assert out["from"] == "jsmith@springfield.gov"
    assert out["in_reply_to"] == "<ack-0042@311cities.org>"
    assert out["references"] == ["<ack-0042@311cities.org>"]
    assert out["reply_text"].startswith("Thanks. One more thing")
    assert "Thank you for writing" in out["text"]
    assert out["is_auto_reply"] is False and out["is_bounce"] is False
    assert out["attachments"] == []


def test_parse_summary() -> None:
    result = CliRunner().invoke(_app(), ["mail", "parse", str(GMAIL)])
    assert result.exit_code == 0
    assert "Jane Smith <jsmith@springfield.gov>" in result.stdout
    assert "none (a person wrote this)" in result.stdout
    assert "Thanks. One more thing" in result.stdout


def test_parse_summary_of_a_bounce() -> None:
    result = CliRunner().invoke(_app(), ["mail", "parse", str(DATA / "eml" / "qmail_bounce.eml")])
    assert result.exit_code == 0
    assert "bounce of <reply-0042@311cities.org> to nobody@springfield.gov" in result.stdout


def test_refused_attachment_in_json(tmp_path: Path) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "a@b.org"
    msg.set_content("see attached")
    msg.add_attachment(b"%PDF" + b"0" * 2000, maintype="application", subtype="pdf",
                       filename="plan.pdf")
    path = tmp_path / "m.eml"
    path.write_bytes(msg.as_bytes())
    result = CliRunner().invoke(
        _app(), ["mail", "parse", str(path), "--json", "--max-attachment-bytes", "100"])
    assert result.exit_code == 0
    [attachment] = json.loads(result.stdout)["attachments"]
    assert attachment["refused"] is True and attachment["size"] == 2004


def test_missing_file_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["mail", "parse", str(tmp_path / "nope.eml")])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: cannot read")
    assert "Traceback" not in result.output


def test_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["mail", "parse", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot read") and "Traceback" not in result.output


def test_garbage_file_still_parses(tmp_path: Path) -> None:
    path = tmp_path / "junk.eml"
    path.write_bytes(b"\xff\xfe\x00 garbage \x80")
    result = CliRunner().invoke(_app(), ["mail", "parse", str(path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["message_id"] is None
