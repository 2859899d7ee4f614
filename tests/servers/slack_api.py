"""A local stand-in for Slack's Web API: a real HTTP server that records every call.

Point the real ``AsyncWebClient`` at ``api.base_url`` (``http://127.0.0.1:PORT/api/``; the
trailing slash matters). Implemented: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``views.open``, ``views.update``, ``users.info``,
``conversations.replies``, ``conversations.history``, ``conversations.open``,
``usergroups.users.list``, ``apps.connections.open``. Anything else answers ``unknown_method``.

Failures on demand: ``api.fail("chat.postMessage", status=429, retry_after=1)`` answers the
next call of that method with HTTP 429 and ``Retry-After``; ``status=500`` a server error;
``error="channel_not_found"`` a Slack error (HTTP 200, ``ok: false``). ``times`` repeats it.

Slash commands and interactions carry a ``response_url``; ``api.response_url()`` gives one on
this server, and what the app posts there is recorded in ``api.responses``.

Socket Mode, as Slack runs it: ``apps.connections.open`` answers only the app-level token
``api.app_token`` (sent as ``Authorization: Bearer xapp-...``) with a
``ws://127.0.0.1:PORT/link/?ticket=...`` URL on this server. A connection gets ``hello``;
``await api.push(type, payload)`` sends an envelope to the newest connection and
``await api.ack(envelope_id)`` waits for the app's ``{"envelope_id", "payload"}``. Every message
the app sends is kept in ``api.acks``. ``await api.drop()`` closes the connection from the
server side; ``await api.disconnect()`` sends Slack's ``disconnect`` message, after which the
app opens a new connection and closes the old one itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["APP_TOKEN", "Call", "SlackApi", "SocketLink"]

BOT_USER = "UBOT311"
BOT_ID = "BBOT311"
TEAM = "T111"
APP_ID = "A0311"
APP_TOKEN = "xapp-1-A0311-1-socketmode"
WAIT = 15.0  # seconds a socket wait may take before the test fails


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    status: int  # what the server answered


@dataclass
class SocketLink:
    """One Socket Mode connection as the server sees it."""

    ticket: str
    ws: web.WebSocketResponse
    received: list[dict[str, Any]] = field(default_factory=list)  # what the app sent on it
    silent: bool = False  # gone dead without a close frame: nothing answered, nothing read

    @property
    def open(self) -> bool:
        return not self.ws.closed


@dataclass
class _Failure:
    status: int
    error: str | None
    retry_after: int | None
    times: int


@dataclass
class SlackApi:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    # channel -> every message posted there (top level and in threads), oldest first
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    app_token: str = APP_TOKEN
    sockets: list[SocketLink] = field(default_factory=list)  # every connection, oldest first
    acks: list[dict[str, Any]] = field(default_factory=list)  # what the app sent on a socket

    def __post_init__(self) -> None:
        self._failures: dict[str, list[_Failure]] = defaultdict(list)
        self._tickets: set[str] = set()
        self._changed = asyncio.Event()
        self._ts = itertools.count(1)
        self._views = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- control ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, name: str = "r") -> str:
        return f"http://127.0.0.1:{self.port}/respond/{name}"

    def add_user(self, user_id: str, *, email: str | None = None, name: str = "",
                 is_bot: bool = False) -> None:
        profile: dict[str, Any] = {"real_name": name or user_id, "display_name": name}
        if email:
            profile["email"] = email
        self.users[user_id] = {"id": user_id, "team_id": TEAM, "name": name or user_id,
                               "real_name": name or user_id, "is_bot": is_bot,
                               "profile": profile}

    def fail(self, method: str, *, status: int = 200, error: str | None = None,
             retry_after: int | None = None, times: int = 1) -> None:
        if status == 200 and error is None:
            raise ValueError("a failure needs a non-200 status or an error")
        self._failures[method].append(_Failure(status, error, retry_after, times))

    def calls_to(self, method: str, *, ok_only: bool = True) -> list[dict[str, Any]]:
        return [c.args for c in self.calls
                if c.method == method and (c.status == 200 or not ok_only)]

    def attempts(self, method: str) -> int:
        return sum(1 for c in self.calls if c.method == method)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        return [m for m in self.messages[channel] if m.get("thread_ts") == ts and m["ts"] != ts]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        for found in self.messages[channel]:
            if found["ts"] == ts:
                return found
        raise KeyError(f"{channel}:{ts}")

    # ---- Socket Mode ----------------------------------------------------------------------

    async def _until(self, ready: Callable[[], bool], what: str) -> None:
        async def watch() -> None:
            while not ready():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(watch(), timeout=WAIT)
        except TimeoutError:
            raise AssertionError(f"Socket Mode: {what}") from None

    async def connected(self, count: int = 1) -> SocketLink:
        """Wait until the app has opened ``count`` connections in all and one is open."""
        await self._until(lambda: len(self.sockets) >= count and self.sockets[-1].open,
                          f"no connection number {count}")
        return self.sockets[-1]

    async def push(self, kind: str, payload: dict[str, Any], *,
                   accepts_response_payload: bool | None = None, retry_attempt: int = 0,
                   retry_reason: str = "") -> str:
        """Send one envelope (``events_api``, ``slash_commands``, ``interactive``) to the
        newest connection; returns its envelope id."""
        link = await self.connected()
        envelope_id = str(uuid.uuid4())
        if accepts_response_payload is None:
            # Slack takes a payload back where the HTTP answer could carry one.
            accepts_response_payload = kind == "slash_commands" or payload.get("type") in (
                "view_submission", "block_suggestion")
        envelope: dict[str, Any] = {"envelope_id": envelope_id, "payload": payload,
                                    "type": kind,
                                    "accepts_response_payload": accepts_response_payload}
        if kind == "events_api":  # Slack sends these on every event, 0 and "" the first time
            envelope.update(retry_attempt=retry_attempt, retry_reason=retry_reason)
        await link.ws.send_json(envelope)
        return envelope_id

    async def ack(self, envelope_id: str) -> dict[str, Any]:
        """Wait for the app's acknowledgement of one envelope."""
        def found() -> dict[str, Any] | None:
            return next((a for a in self.acks if a.get("envelope_id") == envelope_id), None)

        await self._until(lambda: found() is not None, f"envelope {envelope_id} not acked")
        ack = found()
        assert ack is not None
        return ack

    async def drop(self) -> None:
        """Close the newest connection from the server side (a close frame)."""
        link = await self.connected()
        await link.ws.close(code=1001, message=b"going away")

    async def go_silent(self) -> SocketLink:
        """The newest connection dies without a close frame: from now on it answers no ping
        and reads nothing the app sends, as when a NAT entry on the way is dropped."""
        link = await self.connected()
        link.silent = True
        return link

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Slack's notice that it is about to close the connection: the app should open a
        new one (and close this one itself)."""
        link = await self.connected()
        await link.ws.send_json({"type": "disconnect", "reason": reason,
                                 "debug_info": {"host": "applink-local"}})

    def _open_connection(self, authorization: str) -> dict[str, Any]:
        token = authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") \
            else ""
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"ok": True,
                "url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={APP_ID}"}

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        ws = web.WebSocketResponse(autoping=False)  # pings are answered below, unless silent
        await ws.prepare(request)
        link = SocketLink(ticket, ws)
        await ws.send_json({"type": "hello", "num_connections": 1 + sum(
            1 for s in self.sockets if s.open),
            "debug_info": {"host": "applink-local", "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID}})
        self.sockets.append(link)
        self._changed.set()
        try:
            async for message in ws:
                if link.silent:
                    continue
                if message.type == WSMsgType.PING:
                    await ws.pong(message.data)
                elif message.type == WSMsgType.TEXT:
                    link.received.append(json.loads(message.data))
                    self.acks.append(link.received[-1])
                    self._changed.set()
        finally:
            self._changed.set()
        return ws

    # ---- server -------------------------------------------------------------------------

    async def start(self) -> SlackApi:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/respond/{name}", self._respond)
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for link in self.sockets:
            if link.open:
                await link.ws.close(code=1001, message=b"server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append({"name": request.match_info["name"], **body})
        return web.Response(text="ok")

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update({k: v for k, v in (await request.post()).items()
                             if isinstance(v, str)})
        for key in ("blocks", "view", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") or args.get("token")
        failure = self._next_failure(method)
        if failure is not None:
            self.calls.append(Call(method, args, token, failure.status))
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None \
                else {}
            return web.json_response({"ok": False, "error": failure.error or (
                "ratelimited" if failure.status == 429 else "internal_error")},
                status=failure.status, headers=headers)
        self.calls.append(Call(method, args, token, 200))
        if not token:
            return web.json_response({"ok": False, "error": "not_authed"})
        if method == "apps.connections.open":  # the app-level token, in the header only
            return web.json_response(self._open_connection(request.headers.get(
                "Authorization", "")))
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result: dict[str, Any] = handler(args)
        await asyncio.sleep(0)
        return web.json_response(result)

    def _next_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    # ---- methods ------------------------------------------------------------------------

    def _new_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://test.slack.com/", "team": "Test", "user": "city311",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        channel = str(args.get("channel", ""))
        if not channel or channel.startswith("CGONE"):
            return {"ok": False, "error": "channel_not_found"}
        if channel.startswith(("U", "W")):  # a user id: the app's DM with that person
            channel = "D" + channel
        message = {"type": "message", "user": BOT_USER, "bot_id": BOT_ID,
                   "ts": self._new_ts(), "text": args.get("text", ""),
                   "blocks": args.get("blocks") or [], "thread_ts": args.get("thread_ts")}
        if args.get("metadata"):
            message["metadata"] = args["metadata"]
        self.messages[channel].append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        try:
            message = self.message(channel, ts)
        except KeyError:
            return {"ok": False, "error": "message_not_found"}
        message["text"] = args.get("text", message["text"])
        message["blocks"] = args.get("blocks") or message["blocks"]
        return {"ok": True, "channel": channel, "ts": ts, "text": message["text"]}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"ok": True, "message_ts": self._new_ts()}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("trigger_id"):
            return {"ok": False, "error": "invalid_trigger_id"}
        view = dict(args.get("view") or {})
        view["id"] = f"V{next(self._views):04d}"
        return {"ok": True, "view": view}

    def _m_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view = dict(args.get("view") or {})
        view["id"] = args.get("view_id") or "V0000"
        return {"ok": True, "view": view}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _m_conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = str(args.get("users", ""))
        return {"ok": True, "channel": {"id": "D" + users.split(",")[0]}}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args.get("channel")), str(args.get("ts"))
        found = [m for m in self.messages[channel]
                 if m["ts"] == ts or m.get("thread_ts") == ts]
        return {"ok": True, "messages": [self._shown(m, args) for m in found],
                "has_more": False}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel"))
        top = [m for m in self.messages[channel] if not m.get("thread_ts")]
        return {"ok": True, "messages": [self._shown(m, args) for m in reversed(top)],
                "has_more": False}

    @staticmethod
    def _shown(message: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
        if str(args.get("include_all_metadata", "")).lower() in ("1", "true"):
            return message
        return {k: v for k, v in message.items() if k != "metadata"}

    def _m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = str(args.get("usergroup"))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}
