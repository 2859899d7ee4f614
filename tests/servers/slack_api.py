"""A local stand-in for Slack's Web API: a real HTTP server that records every call.

Point the real ``AsyncWebClient`` at ``api.base_url`` (``http://127.0.0.1:PORT/api/``; the
trailing slash matters). Implemented: ``auth.test``, ``chat.postMessage``, ``chat.update``,
``chat.postEphemeral``, ``views.open``, ``views.update``, ``users.info``,
``conversations.replies``, ``conversations.history``, ``conversations.open``,
``usergroups.users.list``. Anything else answers ``unknown_method``.

Failures on demand: ``api.fail("chat.postMessage", status=429, retry_after=1)`` answers the
next call of that method with HTTP 429 and ``Retry-After``; ``status=500`` a server error;
``error="channel_not_found"`` a Slack error (HTTP 200, ``ok: false``). ``times`` repeats it.

Slash commands and interactions carry a ``response_url``; ``api.response_url()`` gives one on
this server, and what the app posts there is recorded in ``api.responses``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Call", "SlackApi"]

BOT_USER = "UBOT311"
BOT_ID = "BBOT311"
TEAM = "T111"


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    token: str | None
    status: int  # what the server answered


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

    def __post_init__(self) -> None:
        self._failures: dict[str, list[_Failure]] = defaultdict(list)
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

    # ---- server -------------------------------------------------------------------------

    async def start(self) -> SlackApi:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_post("/respond/{name}", self._respond)
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
