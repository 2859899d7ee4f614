"""Tokens, signing secrets, passwords and full email addresses never reach the logs.

The real ``python -m city311 serve`` runs at DEBUG against the Slack stand-in, Dovecot and
aiosmtpd through a full flow (an email question, a Slack mention, an approval, a failing
SMTP delivery, a bounce, a request with a bad signature); everything it writes is searched
for the secrets. In process, the desk, mail, bot and knowledge loggers are captured without
the entry point's redacting filter: their messages must not need it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from city311.wiring import build_service
from desk.directory import import_cities, shipped_cities
from desk.ports import Classifier
from desk.settings import DatabaseSettings, MailSettings, Settings, SlackSettings, WebSettings
from mail.parse import parse_message, to_inbound
from tests.hostile.conftest import REVIEWERS
from tests.hostile.support import email_bytes, leaks
from tests.servers import DovecotServer, SmtpServer, free_port
from tests.servers.slack_api import SlackApi
from tests.support import REPO, FakeClock, shared_fixtures

pytestmark = [pytest.mark.dovecot, pytest.mark.slow]

EMAIL_SENDER = "dana.cruz@fallriverma.org"
SLACK_SENDER = "pat.lee@miamigov.com"
SLACK_USER = "UCITY02"
ADDRESSES = [EMAIL_SENDER, SLACK_SENDER]
REF = re.compile(r"C-\d{4}-\d{4,}")


def _payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((shared_fixtures() / "slack" / name).read_text())
    return data


def _signed(body: str, secret: str) -> dict[str, str]:
    stamp = str(int(time.time()))
    return {"X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": SignatureVerifier(secret).generate_signature(
                timestamp=stamp, body=body) or ""}


async def _wait(check: Callable[[], bool | Awaitable[bool]], what: str,
                timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _bounce(original_id: str) -> bytes:
    boundary = "bounce-boundary"
    text = f"""From: Mail Delivery System <MAILER-DAEMON@mx.fallriverma.org>
To: desk@311.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <bounce-1@mx.fallriverma.org>
Date: Tue, 24 Nov 2026 10:05:00 -0500
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain

Your message to {EMAIL_SENDER} could not be delivered: mailbox full.

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.fallriverma.org

Final-Recipient: rfc822; {EMAIL_SENDER}
Action: failed
Status: 5.2.2
Diagnostic-Code: smtp; 552 5.2.2 {EMAIL_SENDER} mailbox full

--{boundary}
Content-Type: text/rfc822-headers

Message-ID: {original_id}
From: 311 for Cities <desk@311.test>
To: {EMAIL_SENDER}
Subject: Re: Bond rating

--{boundary}--
"""
    return text.replace("\n", "\r\n").encode()


async def test_serve_at_debug_never_logs_secrets_or_addresses(
        tmp_path: Path, dovecot: DovecotServer, smtp: SmtpServer, slack_api: SlackApi) -> None:
    token = "xoxb-" + secrets.token_hex(12)
    signing_secret = secrets.token_hex(16)
    smtp_password = "smtp-" + secrets.token_hex(8)
    slack_api.add_user(SLACK_USER, email=SLACK_SENDER, name="Pat Lee")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "MAIL_", "DATABASE_", "SLA_", "WEB_", "CITY311_"))}
    env.update({
        "CITY311_DATA_DIR": str(tmp_path), "CITY311_LOG_LEVEL": "DEBUG",
        "CITY311_WORKER_INTERVAL": "0.2", "WEB_PORT": str(port),
        "SLACK_BOT_TOKEN": token, "SLACK_SIGNING_SECRET": signing_secret,
        "SLACK_REVIEW_CHANNEL": "CREVIEW", "SLACK_API_URL": slack_api.base_url,
        "SLACK_REVIEWERS": ",".join(REVIEWERS),
        "MAIL_ADDRESS": "desk@311.test", "MAIL_IMAP_HOST": dovecot.host,
        "MAIL_IMAP_PORT": str(dovecot.imap_port), "MAIL_IMAP_SECURITY": "plain",
        "MAIL_IMAP_USER": dovecot.user, "MAIL_IMAP_PASSWORD": dovecot.password,
        "MAIL_SMTP_HOST": smtp.host, "MAIL_SMTP_PORT": str(smtp.port),
        "MAIL_SMTP_SECURITY": "plain", "MAIL_SMTP_PASSWORD": smtp_password,
    })
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "city311", "serve"], env=env,
                                stdout=stdout, stderr=stderr)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            await _flow(http, proc, dovecot, smtp, slack_api, signing_secret)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    logs = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert " DEBUG " in logs and " INFO " in logs  # the run really logged at DEBUG
    secrets_ = [token, signing_secret, dovecot.password, smtp_password, *ADDRESSES]
    assert leaks(logs, secrets_) == []
    # The masked forms are there instead: the run did reach code that logs addresses.
    assert "d***@fallriverma.org" in logs and "p***@miamigov.com" in logs


async def _flow(http: httpx.AsyncClient, proc: subprocess.Popen[bytes],
                dovecot: DovecotServer, smtp: SmtpServer, api: SlackApi, secret: str) -> None:
    async def up() -> bool:
        assert proc.poll() is None, "city311 serve exited"
        try:
            return (await http.get("/healthz")).status_code == 200
        except httpx.TransportError:
            return False

    await _wait(up, "the service to start", timeout=180)

    def cards() -> list[dict[str, Any]]:
        return [c for c in api.calls_to("chat.postMessage")
                if c.get("channel") == "CREVIEW" and REF.search(json.dumps(c))]

    # 1. An email question: acknowledged by SMTP, carded in Slack.
    await asyncio.to_thread(dovecot.deliver, email_bytes(
        1, EMAIL_SENDER, subject="Bond rating",
        body=f"Hello,\n\nHow do we improve our bond rating?\n\nDana Cruz\n{EMAIL_SENDER}\n"),
        sender=EMAIL_SENDER)
    await _wait(lambda: bool(cards()) and bool(smtp.received), "the card and the ack")
    email_ref = REF.search(json.dumps(cards()[0]))
    assert email_ref is not None
    ack_id = str(smtp.received[0].message["Message-ID"])

    # 2. A Slack mention from a city user.
    event = {**_payload("events_api_app_mention.json")["event"],
             "text": f"<@UBOT311> How do we reduce crime? Write to me at {SLACK_SENDER}",
             "user": SLACK_USER, "channel": "CCITY", "ts": "1764000000.000100",
             "event_ts": "1764000000.000100"}
    body = json.dumps({**_payload("events_api_app_mention.json"), "event": event,
                       "event_id": "EvLOG1", "authed_users": ["UBOT311"]})
    sent = await http.post("/slack/events", content=body.encode(), headers={
        "Content-Type": "application/json", **_signed(body, secret)})
    assert sent.status_code == 200
    await _wait(lambda: len(cards()) >= 2, "the Slack question's card")

    # 3. A failing SMTP delivery, then 4. the approval that meets it.
    smtp.refuse(f"550 5.1.1 <{EMAIL_SENDER}>: mailbox unavailable", times=None)
    click = copy.deepcopy(_payload("block_actions.json"))
    click["user"] = {**click["user"], "id": REVIEWERS[0]}
    click["container"] = {"type": "message", "message_ts": "1.0", "channel_id": "CREVIEW",
                          "is_ephemeral": False}
    click["channel"] = {"id": "CREVIEW", "name": "review"}
    click["response_url"] = api.response_url("action")
    click["actions"] = [{**click["actions"][0], "action_id": "case_approve",
                         "block_id": f"case:{email_ref.group(0)}",
                         "value": email_ref.group(0)}]
    form = "payload=" + urllib.parse.quote(json.dumps(click))
    approved = await http.post("/slack/events", content=form.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded", **_signed(form, secret)})
    assert approved.status_code == 200

    def notices(word: str) -> list[dict[str, Any]]:
        return [c for c in api.calls_to("chat.postMessage") + api.calls_to("chat.update")
                if word in json.dumps(c).lower()]

    await _wait(lambda: bool(notices("could not deliver")), "the delivery failure notice")
    smtp.accept()

    # 5. A bounce of our acknowledgement.
    await asyncio.to_thread(dovecot.deliver, _bounce(ack_id),
                            sender="MAILER-DAEMON@mx.fallriverma.org")
    await _wait(lambda: bool(notices("bounced")), "the bounce notice")

    # 6. A request with a bad signature, and one with none.
    forged = await http.post("/slack/events", content=body.encode(), headers={
        "Content-Type": "application/json", **_signed(body, "wrong-" + secret)})
    assert forged.status_code == 401
    unsigned = await http.post("/slack/events", content=body.encode(),
                               headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401


async def test_in_process_records_carry_no_addresses_or_tokens(
        tmp_path: Path, smtp: SmtpServer, slack_api: SlackApi, classifier: Classifier,
        caplog: pytest.LogCaptureFixture) -> None:
    token = "xoxb-" + secrets.token_hex(12)
    settings = Settings(
        data_dir=tmp_path, database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'l.db'}"),
        mail=MailSettings(**smtp.mail_settings()),
        slack=SlackSettings(bot_token=token, signing_secret="s" * 32,
                            review_channel="CREVIEW", api_url=slack_api.base_url,
                            reviewers=REVIEWERS),
        web=WebSettings(base_url="http://311.test"))
    clock = FakeClock()
    caplog.set_level(logging.DEBUG)
    service = await build_service(settings, clock=clock, classifier=classifier)
    try:
        await import_cities(service.store, shipped_cities(), clock.now())
        when = datetime(2026, 11, 24, 15, tzinfo=UTC)
        for n, sender in enumerate([EMAIL_SENDER, "someone.private@gmail.com"]):
            raw = email_bytes(n, sender, body=f"How do we fix our budget?\n\n{sender}\n")
            await service.on_inbound(to_inbound(parse_message(raw), raw, when))
        smtp.refuse(f"550 5.1.1 <{EMAIL_SENDER}>: mailbox unavailable", times=None)
        refs = [c["blocks"] for c in slack_api.calls_to("chat.postMessage")]
        for _ in range(5):
            await service.dispatcher.run_once()
            await service.parts["slack"].drain()
        found = REF.findall(json.dumps(slack_api.calls_to("chat.postMessage")))
        assert found, refs
        await service.desk.approve(found[0], REVIEWERS[0])
        for _ in range(5):
            await service.dispatcher.run_once()
            await service.parts["slack"].drain()
        raw = _bounce("<nothing@311.test>")
        await service.on_inbound(to_inbound(parse_message(raw), raw, when))
    finally:
        await service.close()
    # By where the record was made: aiosmtpd's test server logs as "mail.log" too.
    packages = tuple(str(REPO / name) + os.sep
                     for name in ("desk", "mail", "bot", "knowledge", "city311", "nlp"))
    ours = [r for r in caplog.records if r.pathname.startswith(packages)]
    assert ours, "the flow logged nothing of ours"
    for record in ours:
        message = record.getMessage()
        found_leaks = leaks(message, [token, *ADDRESSES, "someone.private@gmail.com"])
        assert found_leaks == [], (record.name, message)
