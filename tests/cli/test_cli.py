"""The command line, run as a real process: contracts and clean errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "city311"]


def run_cli(*args: str, env: dict[str, str] | None = None, data_dir: Path,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "MAIL_", "DATABASE_", "SLA_", "WEB_", "CITY311_"))}
    full["CITY311_DATA_DIR"] = str(data_dir)
    full.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full, timeout=120,
                          input=stdin)


@pytest.mark.parametrize(("variable", "value"), [
    ("WEB_PORT", "not-a-port"),
    ("SLA_TIMEZONE", "Mars/Olympus_Mons"),
    ("DATABASE_URL", "mysql://nope"),
    ("SLA_OPEN_AT", "25:99"),
])
def test_broken_setting_stops_with_one_line_naming_it(tmp_path: Path, variable: str,
                                                      value: str) -> None:
    result = run_cli("cities", "list", env={variable: value}, data_dir=tmp_path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_half_configured_slack_names_the_missing_variable(tmp_path: Path) -> None:
    result = run_cli("cities", "list", env={"SLACK_BOT_TOKEN": "xoxb-1"}, data_dir=tmp_path)
    assert result.returncode != 0
    assert "SLACK_SIGNING_SECRET" in result.stderr
    assert "xoxb-1" not in result.stderr


def test_a_password_over_plain_text_to_another_machine_is_refused(tmp_path: Path) -> None:
    mail = {"MAIL_ADDRESS": "desk@311.example", "MAIL_SMTP_HOST": "smtp.311.example",
            "MAIL_SMTP_SECURITY": "plain", "MAIL_SMTP_USER": "desk",
            "MAIL_SMTP_PASSWORD": "hunter2-secret"}
    refused = run_cli("cities", "list", env=mail, data_dir=tmp_path)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "MAIL_SMTP_SECURITY" in refused.stderr and "hunter2" not in refused.stderr
    trusted = run_cli("cities", "list", data_dir=tmp_path,
                      env={**mail, "MAIL_ALLOW_PLAINTEXT_LOGIN": "true"})
    assert trusted.returncode == 0, trusted.stderr
    local = run_cli("cities", "list", data_dir=tmp_path,
                    env={**mail, "MAIL_SMTP_HOST": "127.0.0.1"})
    assert local.returncode == 0, local.stderr


def test_cities_shipped_add_import_list(tmp_path: Path) -> None:
    listed = run_cli("cities", "list", "--json", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {(c["name"], c["state"]) for c in json.loads(listed.stdout)}
    assert {("Fall River", "MA"), ("Kansas City", "KS"), ("Miami", "FL"), ("Compton", "CA"),
            ("Lynwood", "CA")} <= names
    added = run_cli("cities", "add", "Gary", "IN", "--domain", "gary.gov", data_dir=tmp_path)
    assert added.returncode == 0 and "gary.gov" in added.stdout
    csv = tmp_path / "more.csv"
    csv.write_text("name,state,domains\nFlint,MI,cityofflint.com\nDayton,OH,daytonohio.gov\n")
    imported = run_cli("cities", "import", str(csv), data_dir=tmp_path)
    assert imported.returncode == 0 and "imported 2" in imported.stdout
    listed = json.loads(run_cli("cities", "list", "--json", data_dir=tmp_path).stdout)
    assert {"Gary", "Flint", "Dayton"} <= {c["name"] for c in listed}


def test_cities_import_bad_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("city,st\nFlint,MI\n")
    result = run_cli("cities", "import", str(bad), data_dir=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "name" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = run_cli("cities", "import", str(tmp_path / "none.csv"), data_dir=tmp_path)
    assert missing.returncode != 0 and "cannot read" in missing.stderr


def test_sla_due_json(tmp_path: Path) -> None:
    result = run_cli("sla", "due", "--received", "2026-12-24T17:30:00-05:00", "--json",
                     data_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    due = json.loads(result.stdout)
    # Thu Dec 24 after hours -> clock starts Mon Dec 28 09:00 (Christmas Fri 25 is closed)
    # 24 business hours -> Wed Dec 30 17:00 EST.
    assert due["due"] == "2026-12-30T17:00:00-05:00"
    assert due["business_hours"] == 24


def test_db_upgrade_and_downgrade_commands(tmp_path: Path) -> None:
    up = run_cli("db", "upgrade", data_dir=tmp_path)
    assert up.returncode == 0, up.stderr
    assert (tmp_path / "city311.db").exists()
    down = run_cli("db", "downgrade", "base", data_dir=tmp_path)
    assert down.returncode == 0, down.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_prints_url_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "MAIL_", "DATABASE_", "SLA_", "WEB_", "CITY311_"))}
    env.update(CITY311_DATA_DIR=str(tmp_path), WEB_PORT=str(port))
    proc = subprocess.Popen([*CLI, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        body = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.3)
        assert body is not None and body["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert f"http://127.0.0.1:{port}" in out
        assert "channels:" in out and "slack off" in out
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ask_shows_topics_urgency_entities_and_triage(tmp_path: Path) -> None:
    urgent = run_cli("ask", "Our council votes Tuesday on whether to declare a fiscal emergency",
                     data_dir=tmp_path)
    assert urgent.returncode == 0, urgent.stderr
    lines = urgent.stdout.splitlines()
    assert lines[0].startswith("topics: ") and "budget_finance" in lines[0]
    assert lines[1].startswith("urgency: ")
    assert "fiscal emergency" in lines[1] and "council votes Tuesday" in lines[1]
    assert "DATE=Tuesday" in lines[2]
    assert not any(line.startswith("needs triage") for line in lines)
    vague = run_cli("ask", "hello is anyone there", data_dir=tmp_path)
    assert vague.returncode == 0, vague.stderr
    assert vague.stdout.splitlines()[1].startswith("needs triage: ")
    assert vague.stdout.splitlines()[0].count("(") == 3  # the three best guesses
    assert not any(line.startswith("urgency") for line in vague.stdout.splitlines())
