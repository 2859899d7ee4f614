"""Follow-up coaching calls from Slack: the card's "Schedule follow-up" modal, ``/311 followup``
with a confirmation, "Log outcome", ``/311 followups`` and ``/311 stats``.

The scheduling itself (invitations, reminders, the case's state) is ``desk.followups``; this
module only turns clicks and commands into its calls. Who may act on a call: reviewers, and
the coach of the case or of the call.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot import strings as S
from bot.blocks import A, V, metadata
from bot.review import Where
from bot.strings import escape, trim
from desk.errors import AlreadyDoneError, DeskError, InputError, NotFoundError, WorkflowError
from desk.followups import FollowUps, parse_followup_command
from desk.models import Case
from desk.reports import headline

if TYPE_CHECKING:
    from bot.app import SlackBot

__all__ = ["DURATIONS", "FollowUpSurface"]

log = logging.getLogger(__name__)

DURATIONS = (15, 30, 45, 60, 90)


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": trim(text, 75)[0], "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


class FollowUpSurface:
    def __init__(self, bot: SlackBot, followups: FollowUps | None = None) -> None:
        self.bot = bot
        self.desk = bot.desk
        found = followups or getattr(bot.desk, "followups", None)
        if not isinstance(found, FollowUps):
            # Without the service's own object: same database, same rules, but invitations
            # name no organizer address (see SlackBot's ``followups`` argument).
            found = FollowUps(bot.desk.store, bot.desk.clock, bot.desk.calendar,
                              organizer_email="")
        self.followups = found
        self.enabled = True

    def register(self, app: AsyncApp) -> None:
        app.action(A.SCHEDULE)(self.on_schedule)
        app.action(A.OUTCOME)(self.on_outcome)
        app.action(A.CONFIRM_FOLLOWUP)(self.on_confirm)
        app.view(V.SCHEDULE)(self.on_schedule_submit)
        app.view(V.OUTCOME)(self.on_outcome_submit)

    # ---- permissions --------------------------------------------------------------------

    async def _may(self, user: str, *coaches: str | None) -> bool:
        return user in coaches or await self.bot.reviewers.allows(user)

    async def _case(self, ref: str) -> Case | None:
        async with self.desk.store.reading() as session:
            return await self.desk.store.find_case(session, ref)

    async def _coach_email(self, coach: str) -> str | None:
        profile = await self.bot.intake.profile(coach)
        return profile.email

    # ---- the card's button and modal ----------------------------------------------------

    async def on_schedule(self, ack: AsyncAck, body: dict[str, Any],
                          action: dict[str, Any]) -> None:
        await ack()
        where = Where.of_action(body, str(action.get("value", "")))
        self.bot.spawn(self._open_schedule(where, str(body["trigger_id"])), "schedule")

    async def _open_schedule(self, where: Where, trigger_id: str) -> None:
        case = await self._case(where.ref)
        if case is None:
            await self.bot.tell(where.user, S.NO_SUCH_CASE.format(ref=escape(where.ref)),
                                channel=where.channel)
            return
        if not await self._may(where.user, case.coach):
            await self.bot.tell(where.user, S.NOT_REVIEWER, channel=where.channel)
            return
        calendar = self.desk.calendar
        day = calendar.next_business_day(calendar.local(self.desk.clock.now()).date())
        view = schedule_modal(case.ref, coach=case.coach or where.user, day=day,
                              phone=case.contact.phone if case.contact else None,
                              private=where.private())
        try:
            await self.bot.client.views_open(trigger_id=trigger_id, view=view)
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.open failed for %s: %s", case.ref, exc)

    async def on_schedule_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        where = Where.of_view(body)
        values = body["view"]["state"]["values"]
        coach = _value(values, "coach", "user", "selected_user")
        day = _value(values, "date", "day", "selected_date")
        at = _value(values, "time", "at", "selected_time")
        option = (values.get("duration", {}).get("minutes", {}).get("selected_option") or {})
        phone = _value(values, "phone", "text", "value")
        agenda = _value(values, "agenda", "text", "value")
        errors: dict[str, str] = {}
        if not coach:
            errors["coach"] = "Choose the coach who will call."
        starts_at = None
        if not day or not at:
            errors["time" if day else "date"] = S.FOLLOWUP_BAD_TIME
        else:
            starts_at = self._instant(day, at)
            if starts_at is None:
                errors["date"] = S.FOLLOWUP_BAD_TIME
            elif starts_at <= self.desk.clock.now():
                errors["date"] = f"{self.desk.calendar.describe(starts_at)} has already passed."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        assert starts_at is not None and coach
        await ack()
        minutes = int(option.get("value") or 30)
        self.bot.spawn(self._schedule(where, coach=coach, starts_at=starts_at, minutes=minutes,
                                      phone=phone, agenda=agenda), "schedule")

    def _instant(self, day: str, at: str) -> datetime | None:
        try:
            local = datetime.combine(date.fromisoformat(day), time.fromisoformat(at),
                                     tzinfo=self.desk.calendar.zone)
        except ValueError:
            return None
        return local.astimezone(UTC)

    async def _schedule(self, where: Where, *, coach: str, starts_at: datetime, minutes: int,
                        phone: str | None, agenda: str | None,
                        response_url: str | None = None) -> None:
        case = await self._case(where.ref)
        if case is None:
            await self.bot.tell(where.user, S.NO_SUCH_CASE.format(ref=escape(where.ref)),
                                channel=where.channel, response_url=response_url)
            return
        if not await self._may(where.user, case.coach, coach):
            await self.bot.tell(where.user, S.NOT_REVIEWER, channel=where.channel,
                                response_url=response_url)
            return
        try:
            await self.followups.schedule(
                case.ref, where.user, coach=coach, starts_at=starts_at,
                duration_minutes=minutes, phone=phone, agenda=agenda,
                coach_email=await self._coach_email(coach))
        except (WorkflowError, InputError, NotFoundError) as exc:
            await self.bot.tell(where.user, S.CANNOT.format(problem=escape(str(exc))),
                                channel=where.channel, response_url=response_url)
            return
        except DeskError:
            log.exception("scheduling a follow-up on %s failed", case.ref)
            await self.bot.tell(where.user, S.FAILED, channel=where.channel,
                                response_url=response_url)
            return
        self.bot.wake()
        if response_url:
            await self.bot.tell(where.user, S.FOLLOWUP_SCHEDULED.format(
                ref=case.ref, when=self.desk.calendar.describe(starts_at), coach=coach),
                response_url=response_url, replace=True)

    # ---- logging the outcome ------------------------------------------------------------

    async def on_outcome(self, ack: AsyncAck, body: dict[str, Any],
                         action: dict[str, Any]) -> None:
        await ack()
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        self.bot.spawn(self._open_outcome(str(body["user"]["id"]), str(action.get("value")),
                                          channel, str(body["trigger_id"])), "outcome")

    async def _open_outcome(self, user: str, followup_id: str, channel: str | None,
                            trigger_id: str) -> None:
        try:
            followup = await self.followups.get(int(followup_id))
        except (ValueError, NotFoundError):
            await self.bot.tell(user, S.CANNOT.format(problem="that call no longer exists"),
                                channel=channel)
            return
        if not await self._may(user, followup.coach):
            await self.bot.tell(user, S.NOT_REVIEWER, channel=channel)
            return
        async with self.desk.store.session() as session:
            case = await session.get(Case, followup.case_id)
        ref = case.ref if case else "?"
        private = metadata(ref, channel, None, followup=followup.id)
        try:
            await self.bot.client.views_open(trigger_id=trigger_id,
                                             view=outcome_modal(ref, private))
        except (SlackApiError, SlackClientError) as exc:
            log.warning("views.open failed for follow-up %s: %s", followup.id, exc)

    async def on_outcome_submit(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        where = Where.of_view(body)
        meta = json.loads(body["view"].get("private_metadata") or "{}")
        values = body["view"]["state"]["values"]
        notes = _value(values, "notes", "text", "value") or ""
        step = (values.get("next", {}).get("step", {}).get("selected_option") or {}).get(
            "value")
        if step not in ("close", "another"):
            await ack(response_action="errors", errors={"next": "Choose what happens next."})
            return
        if len(notes) > 3_000:
            await ack(response_action="errors", errors={"notes": "At most 3,000 characters."})
            return
        await ack()
        self.bot.spawn(self._log(where, int(meta.get("followup") or 0), notes, str(step)),
                       "outcome")

    async def _log(self, where: Where, followup_id: int, notes: str, step: str) -> None:
        try:
            followup = await self.followups.get(followup_id)
            if not await self._may(where.user, followup.coach):
                await self.bot.tell(where.user, S.NOT_REVIEWER, channel=where.channel)
                return
            await self.followups.log_outcome(followup_id, where.user, notes=notes,
                                             next_step=step)
        except AlreadyDoneError as exc:
            await self.bot.tell(where.user, S.CANNOT.format(problem=escape(str(exc))),
                                channel=where.channel)
            return
        except (WorkflowError, InputError, NotFoundError) as exc:
            await self.bot.tell(where.user, S.CANNOT.format(problem=escape(str(exc))),
                                channel=where.channel)
            return
        self.bot.wake()
        await self.bot.tell(where.user, S.FOLLOWUP_LOGGED.format(ref=where.ref),
                            channel=where.channel)

    # ---- /311 followup, /311 followups, /311 stats --------------------------------------

    async def command(self, ack: AsyncAck, verb: str, rest: str,
                      command: dict[str, Any]) -> None:
        user = str(command.get("user_id", ""))
        if verb == "stats":
            await ack(response_type="ephemeral", text="Counting…")
            self.bot.spawn(self._stats(user, command.get("response_url"),
                                       str(command.get("channel_id", ""))), "stats")
        elif verb == "followups":
            text, blocks = await self._upcoming(user)
            await ack(response_type="ephemeral", text=text, blocks=blocks)
        else:
            await self._propose(ack, user, rest)

    async def _propose(self, ack: AsyncAck, user: str, rest: str) -> None:
        calendar = self.desk.calendar
        try:
            parsed = parse_followup_command(rest, calendar, self.desk.clock.now())
        except InputError as exc:
            await ack(response_type="ephemeral",
                      text=f"{escape(str(exc))}\n{S.FOLLOWUP_USAGE}")
            return
        if parsed.coach is None and parsed.coach_name:
            await ack(response_type="ephemeral", text=(
                f"Mention the coach so Slack links them (@{escape(parsed.coach_name)} is "
                f"plain text here).\n{S.FOLLOWUP_USAGE}"))
            return
        coach = parsed.coach or user
        case = await self._case(parsed.case_ref)
        if case is None:
            await ack(response_type="ephemeral",
                      text=S.NO_SUCH_CASE.format(ref=parsed.case_ref))
            return
        text = S.FOLLOWUP_CONFIRM.format(minutes=parsed.duration_minutes, ref=case.ref,
                                         coach=coach, when=calendar.describe(parsed.starts_at))
        value = json.dumps({"ref": case.ref, "at": parsed.starts_at.isoformat(),
                            "minutes": parsed.duration_minutes, "coach": coach})
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": _mrkdwn(text)},
            {"type": "actions", "block_id": f"followup:{case.ref}", "elements": [
                {"type": "button", "text": _plain("Confirm"), "style": "primary",
                 "action_id": A.CONFIRM_FOLLOWUP, "value": value}]},
        ]
        await ack(response_type="ephemeral", text=text, blocks=blocks)

    async def on_confirm(self, ack: AsyncAck, body: dict[str, Any],
                         action: dict[str, Any]) -> None:
        await ack()
        proposal = json.loads(str(action.get("value") or "{}"))
        container = body.get("container") or {}
        channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
        where = Where(str(body["user"]["id"]), str(proposal.get("ref", "")), channel)
        self.bot.spawn(self._schedule(
            where, coach=str(proposal.get("coach")),
            starts_at=datetime.fromisoformat(str(proposal.get("at"))),
            minutes=int(proposal.get("minutes") or 30), phone=None, agenda=None,
            response_url=body.get("response_url")), "confirm")

    async def _upcoming(self, user: str) -> tuple[str, list[dict[str, Any]]]:
        calls = await self.followups.upcoming_calls(user)
        if not calls:
            return S.FOLLOWUP_NONE, [{"type": "section", "text": _mrkdwn(S.FOLLOWUP_NONE)}]
        now = self.desk.clock.now()
        lines = [S.FOLLOWUP_LIST_HEAD]
        blocks: list[dict[str, Any]] = [{"type": "section",
                                          "text": _mrkdwn(S.FOLLOWUP_LIST_HEAD)}]
        for call in calls:
            followup = call.followup
            phone = f", {escape(followup.phone)}" if followup.phone else ""
            line = S.FOLLOWUP_LINE.format(
                when=self.desk.calendar.describe(followup.starts_at), ref=call.case_ref,
                city=escape(call.city or "unknown city"), minutes=followup.duration_minutes,
                phone=phone)
            lines.append(line)
            block: dict[str, Any] = {"type": "section", "text": _mrkdwn(line)}
            if followup.starts_at <= now:
                block["accessory"] = {"type": "button", "text": _plain("Log outcome"),
                                      "action_id": A.OUTCOME, "value": str(followup.id)}
            blocks.append(block)
        return "\n".join(lines), blocks[:50]

    async def _stats(self, user: str, response_url: str | None, channel: str) -> None:
        figures = await headline(self.desk.store, self.desk.calendar, self.desk.clock.now())
        await self.bot.tell(user, escape(str(figures["text"])), channel=channel,
                            response_url=response_url)


def _value(values: dict[str, Any], block: str, action: str, key: str) -> str | None:
    found = values.get(block, {}).get(action, {}).get(key)
    if found is None:
        return None
    text = str(found).strip()
    return text or None


def schedule_modal(ref: str, *, coach: str, day: date, phone: str | None,
                   private: str) -> dict[str, Any]:
    durations = [{"text": _plain(f"{m} minutes"), "value": str(m)} for m in DURATIONS]
    phone_element: dict[str, Any] = {"type": "plain_text_input", "action_id": "text",
                                     "max_length": 40}
    if phone:
        phone_element["initial_value"] = phone
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "coach", "label": _plain("Coach"),
         "element": {"type": "users_select", "action_id": "user", "initial_user": coach}},
        {"type": "input", "block_id": "date", "label": _plain("Date (office time zone)"),
         "element": {"type": "datepicker", "action_id": "day",
                     "initial_date": day.isoformat()}},
        {"type": "input", "block_id": "time", "label": _plain("Time"),
         "element": {"type": "timepicker", "action_id": "at", "initial_time": "10:00"}},
        {"type": "input", "block_id": "duration", "label": _plain("Duration"),
         "element": {"type": "static_select", "action_id": "minutes", "options": durations,
                     "initial_option": durations[1]}},
        {"type": "input", "block_id": "phone", "label": _plain("Phone number"),
         "optional": True, "element": phone_element},
        {"type": "input", "block_id": "agenda", "label": _plain("Agenda"), "optional": True,
         "element": {"type": "plain_text_input", "action_id": "text", "multiline": True,
                     "max_length": 2000}},
    ]
    return {"type": "modal", "callback_id": V.SCHEDULE, "title": _plain("Follow-up call"),
            "submit": _plain("Schedule"), "close": _plain("Cancel"), "blocks": blocks,
            "private_metadata": private}


def outcome_modal(ref: str, private: str) -> dict[str, Any]:
    steps = [{"text": _plain("Close the case"), "value": "close"},
             {"text": _plain("Schedule another follow-up"), "value": "another"}]
    blocks: list[dict[str, Any]] = [
        {"type": "input", "block_id": "notes", "label": _plain(f"How did the call on {ref} go?"),
         "optional": True, "element": {"type": "plain_text_input", "action_id": "text",
                                       "multiline": True, "max_length": 3000}},
        {"type": "input", "block_id": "next", "label": _plain("Next step"),
         "element": {"type": "radio_buttons", "action_id": "step", "options": steps,
                     "initial_option": steps[0]}},
    ]
    return {"type": "modal", "callback_id": V.OUTCOME, "title": _plain("Log outcome"),
            "submit": _plain("Save"), "close": _plain("Cancel"), "blocks": blocks,
            "private_metadata": private}

