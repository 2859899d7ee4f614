"""The Slack scenario harness: the real service (``build_service`` + ``build_app``) under
uvicorn on a real socket, the real ``AsyncWebClient`` pointed at a local Slack stand-in, and
requests signed the way Slack signs them, with bodies shaped like Slack's own payloads."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import select

from bot.app import SlackBot
from city311.web import build_app
from city311.wiring import Service, build_service
from desk.directory import import_cities, shipped_cities
from desk.migrate import upgrade
from desk.models import Case
from desk.settings import DatabaseSettings, Settings, SlackSettings, WebSettings
from tests.conftest import truncate_all
from tests.fakes import KeywordClassifier
from tests.servers.slack_api import SlackApi
from tests.support import FakeClock, shared_fixtures

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
REVIEWERS = ["UREV1", "UREV2"]
REVIEW_CHANNEL = "CREVIEW"
CITY_USER = "UCITY01"  # dana@fallriverma.org: Fall River, MA
STRANGER = "USTRANGE"  # a gmail address: no city
OUTSIDER = "UOUTSIDE"  # in the workspace, not a reviewer


def payload(name: str) -> dict[str, Any]:
    path: Path = shared_fixtures() / "slack" / name
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def sign(body: str, *, timestamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature}


@dataclass
class Slack:
    api: SlackApi
    service: Service
    bot: SlackBot
    http: httpx.AsyncClient
    clock: FakeClock
    _ts: int = 0
    _events: int = 0

    # ---- requests -----------------------------------------------------------------------

    def next_ts(self) -> str:
        self._ts += 1
        return f"1764000000.{self._ts:06d}"

    async def post(self, body: str, content_type: str, *,
                   headers: dict[str, str] | None = None) -> httpx.Response:
        signed = {"Content-Type": content_type, **sign(body), **(headers or {})}
        return await self.http.post("/slack/events", content=body.encode(), headers=signed)

    async def event(self, event: dict[str, Any], *, event_id: str | None = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        body = copy.deepcopy(payload("events_api_app_mention.json"))
        self._events += 1
        body["event"] = event
        body["event_id"] = event_id or f"Ev{self._events:06d}"
        body["authed_users"] = ["UBOT311"]
        return await self.post(json.dumps(body), "application/json", headers=headers)

    def mention(self, text: str, *, user: str = CITY_USER, channel: str = "CCITY",
                thread_ts: str | None = None) -> dict[str, Any]:
        template = payload("events_api_app_mention.json")["event"]
        ts = self.next_ts()
        event = {**template, "text": f"<@UBOT311> {text}", "user": user, "ts": ts,
                 "event_ts": ts, "channel": channel}
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    def message(self, text: str, *, user: str = CITY_USER, channel: str = "CCITY",
                thread_ts: str | None = None, channel_type: str = "channel") -> dict[str, Any]:
        template = payload("events_api_message.json")["event"]
        ts = self.next_ts()
        event = {**template, "text": text, "user": user, "ts": ts, "event_ts": ts,
                 "channel": channel, "channel_type": channel_type}
        event["blocks"] = []
        if thread_ts:
            event["thread_ts"] = thread_ts
        return event

    async def interaction(self, body: dict[str, Any]) -> httpx.Response:
        form = "payload=" + urllib.parse.quote(json.dumps(body))
        return await self.post(form, "application/x-www-form-urlencoded")

    async def click(self, action_id: str, value: str, *, user: str = "UREV1",
                    card: tuple[str, str] | None = None, extra: dict[str, Any] | None = None
                    ) -> httpx.Response:
        body = copy.deepcopy(payload("block_actions.json"))
        channel, ts = card or (REVIEW_CHANNEL, "1.0")
        body["user"] = {**body["user"], "id": user}
        body["container"] = {"type": "message", "message_ts": ts, "channel_id": channel,
                             "is_ephemeral": False}
        body["channel"] = {"id": channel, "name": "city311-review"}
        body["response_url"] = self.api.response_url("action")
        action = {**body["actions"][0], "action_id": action_id, "block_id": f"case:{value}",
                  "value": value, **(extra or {})}
        body["actions"] = [action]
        return await self.interaction(body)

    async def submit(self, view: dict[str, Any], values: dict[str, Any], *,
                     user: str = "UREV1") -> httpx.Response:
        body = copy.deepcopy(payload("view_submission.json"))
        body["user"] = {**body["user"], "id": user}
        body["view"] = {**body["view"], "callback_id": view["callback_id"],
                        "private_metadata": view["private_metadata"],
                        "blocks": view["blocks"], "state": {"values": values}}
        return await self.interaction(body)

    async def command(self, text: str, *, user: str = CITY_USER,
                      channel: str = "CCITY") -> httpx.Response:
        fields = dict(payload("slash_command.parsed.json"))
        fields.update(command="/311", text=text, user_id=user, channel_id=channel,
                      response_url=self.api.response_url("command"))
        return await self.post(urllib.parse.urlencode(fields),
                               "application/x-www-form-urlencoded")

    # ---- driving the worker -------------------------------------------------------------

    async def settle(self) -> None:
        """Finish the listeners' work and deliver the outbox until nothing more is due."""
        for _ in range(30):
            await self.bot.drain()
            result = await self.service.dispatcher.run_once()
            if not result.sent and not result.failed and not self.bot._tasks:
                return
        raise AssertionError("the outbox did not settle")

    async def case(self, ref: str = "C-2026-0001") -> Case:
        async with self.service.store.session() as session:
            found = await self.service.store.find_case(session, ref)
            assert found is not None, ref
            return found

    async def cases(self) -> list[Case]:
        async with self.service.store.session() as session:
            return list((await session.execute(select(Case).order_by(Case.id))).scalars())

    def posts(self, channel: str) -> list[dict[str, Any]]:
        return [c for c in self.api.calls_to("chat.postMessage") if c.get("channel") == channel]

    def card(self, case: Case) -> dict[str, Any]:
        assert case.review_channel and case.review_ts
        return self.api.message(case.review_channel, case.review_ts)

    def last_view(self) -> dict[str, Any]:
        views = self.api.calls_to("views.open")
        assert views, "no modal was opened"
        view: dict[str, Any] = views[-1]["view"]
        return view

    def ephemerals(self, user: str) -> list[str]:
        return [str(c.get("text")) for c in self.api.calls_to("chat.postEphemeral")
                if c.get("user") == user]


def card_text(message: dict[str, Any]) -> str:
    """Every text of a message's blocks, joined: what a person sees on the card."""
    out: list[str] = [str(message.get("text", ""))]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks") or [])
    return "\n".join(out)


def action_ids(message: dict[str, Any]) -> list[str]:
    found = []
    for block in message.get("blocks") or []:
        for element in block.get("elements") or []:
            if "action_id" in element:
                found.append(element["action_id"])
        accessory = block.get("accessory")
        if accessory and "action_id" in accessory:
            found.append(accessory["action_id"])
    return found


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per session; each test gets a copy (migrating is slow)."""
    path = tmp_path_factory.mktemp("template") / "city311.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             migrated_sqlite: Path) -> str:
    """SQLite unless a test asks for ``postgresql`` (indirect parametrization)."""
    backend = getattr(request, "param", "sqlite")
    if backend == "sqlite":
        target = tmp_path_factory.mktemp("db") / "city311.db"
        for suffix in ("", "-wal", "-shm"):
            source = migrated_sqlite.with_name(migrated_sqlite.name + suffix)
            if source.exists():
                shutil.copyfile(source, target.with_name(target.name + suffix))
        return f"sqlite+aiosqlite:///{target}"
    url = str(request.getfixturevalue("pg_url"))
    asyncio.run(truncate_all(url))
    return url


def slack_settings(api: SlackApi, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = dict(
        bot_token="xoxb-test-token", signing_secret=SECRET, review_channel=REVIEW_CHANNEL,
        escalation_channel="CESCALATE", api_url=api.base_url, reviewers=REVIEWERS)
    values.update(overrides)
    return SlackSettings(**values)


@pytest.fixture
async def slack_api() -> AsyncIterator[SlackApi]:
    api = await SlackApi().start()
    api.add_user(CITY_USER, email="Dana@FallRiverMA.org", name="Dana Cruz")
    api.add_user(STRANGER, email="someone@gmail.com", name="Sam Stranger")
    api.add_user(OUTSIDER, email="pat@network.test", name="Pat Outsider")
    for reviewer in REVIEWERS:
        api.add_user(reviewer, email=f"{reviewer.lower()}@network.test", name=reviewer)
    api.add_user("UCOACH1", email="coach@network.test", name="Casey Coach")
    yield api
    await api.stop()


@pytest.fixture
def slack_overrides() -> dict[str, Any]:
    return {}


@pytest.fixture
async def slack(database: str, slack_api: SlackApi, tmp_path: Path,
                slack_overrides: dict[str, Any]) -> AsyncIterator[Slack]:
    settings = Settings(
        data_dir=tmp_path, database=DatabaseSettings(url=database),
        slack=slack_settings(slack_api, **slack_overrides),
        web=WebSettings(base_url="http://311.test"))
    clock = FakeClock()
    service = await build_service(settings, clock=clock, classifier=KeywordClassifier(),
                                  migrate=False)
    await import_cities(service.store, shipped_cities(), clock.now())
    bot = service.parts["slack"]
    assert isinstance(bot, SlackBot)
    server = uvicorn.Server(uvicorn.Config(build_app(service), host="127.0.0.1", port=0,
                                           log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield Slack(slack_api, service, bot, http, clock)
    server.should_exit = True
    await serving
    await service.close()
