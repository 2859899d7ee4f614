"""Follow-up coaching calls from Slack, over real HTTP: the card's modal, the command with its
confirmation, the outcome, the coach's list, and the headline figures."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from bot.blocks import A
from desk.models import FollowUp, Outbox
from tests.bot.conftest import OUTSIDER, REVIEW_CHANNEL, Slack, action_ids


async def answered_case(slack: Slack) -> str:
    await slack.event(slack.mention("How do we improve our bond rating?"))
    await slack.settle()
    await slack.click(A.APPROVE, "C-2026-0001")
    await slack.settle()
    case = await slack.case()
    assert case.status == "sent"
    return case.ref


def schedule_values(day: str, at: str, *, coach: str = "UCOACH1") -> dict[str, object]:
    return {
        "coach": {"user": {"type": "users_select", "selected_user": coach}},
        "date": {"day": {"type": "datepicker", "selected_date": day}},
        "time": {"at": {"type": "timepicker", "selected_time": at}},
        "duration": {"minutes": {"type": "static_select",
                                 "selected_option": {"value": "45"}}},
        "phone": {"text": {"type": "plain_text_input", "value": "+1 508 555 0100"}},
        "agenda": {"text": {"type": "plain_text_input", "value": "Rating agency call prep"}},
    }


async def followups(slack: Slack) -> list[FollowUp]:
    async with slack.service.store.session() as session:
        return list((await session.execute(select(FollowUp))).scalars())


async def test_schedule_from_the_card_modal(slack: Slack) -> None:
    ref = await answered_case(slack)
    case = await slack.case()
    assert A.SCHEDULE in action_ids(slack.card(case))

    await slack.click(A.SCHEDULE, ref, user=OUTSIDER)
    await slack.settle()
    assert "Only reviewers" in slack.ephemerals(OUTSIDER)[0]
    assert slack.api.calls_to("views.open") == []

    await slack.click(A.SCHEDULE, ref)
    await slack.settle()
    view = slack.last_view()
    assert view["callback_id"] == "schedule_followup"
    assert view["blocks"][1]["element"]["initial_date"] == "2026-11-25"  # next business day

    past = await slack.submit(view, schedule_values("2026-11-23", "14:00"))
    assert past.json()["response_action"] == "errors" and "passed" in past.json()["errors"]["date"]
    ok = await slack.submit(view, schedule_values("2026-12-01", "14:00"))
    assert ok.status_code == 200 and ok.text == ""
    await slack.settle()

    [call] = await followups(slack)
    assert call.starts_at == datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 2 PM EST
    assert (call.coach, call.duration_minutes, call.phone) == ("UCOACH1", 45, "+1 508 555 0100")
    assert call.coach_email == "coach@network.test"
    case = await slack.case()
    assert case.status == "follow_up_scheduled" and case.coach == "UCOACH1"
    async with slack.service.store.session() as session:
        invite = (await session.execute(select(Outbox).where(Outbox.kind == "invite"))
                  ).scalar_one()
    assert "coach@network.test" in invite.payload["to"]
    card = slack.card(case)
    assert A.SCHEDULE not in action_ids(card)  # one scheduled call at a time
    history = [m["text"] for m in slack.api.thread(REVIEW_CHANNEL, case.review_ts or "")]
    assert any("Follow-up call with <@UCOACH1>" in h for h in history)


async def test_followup_command_confirms_the_parsed_time_first(slack: Slack) -> None:
    ref = await answered_case(slack)
    bad = await slack.command(f"followup {ref} sometime soon", user="UREV1")
    assert "Usage" in bad.json()["text"]
    assert await followups(slack) == []

    proposal = await slack.command(f"followup {ref} next Tuesday 2pm 30m <@UCOACH1|casey>",
                                   user="UREV1")
    body = proposal.json()
    assert body["response_type"] == "ephemeral"
    assert "Tuesday, December 1, 2026 at 2:00 PM EST" in body["text"]
    assert await followups(slack) == []  # nothing happens before the confirmation
    button = body["blocks"][1]["elements"][0]
    assert button["action_id"] == A.CONFIRM_FOLLOWUP

    await slack.click(A.CONFIRM_FOLLOWUP, button["value"], user="UREV1",
                      card=("CCITY", "1.0"))
    await slack.settle()
    [call] = await followups(slack)
    assert call.starts_at == datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
    assert (call.coach, call.duration_minutes) == ("UCOACH1", 30)
    told = [r for r in slack.api.responses if r["name"] == "action"]
    assert told and "scheduled" in told[-1]["text"] and told[-1]["replace_original"]


async def test_coach_lists_calls_and_logs_the_outcome(slack: Slack) -> None:
    ref = await answered_case(slack)
    proposal = await slack.command(f"followup {ref} next Tuesday 2pm 30m <@UCOACH1|casey>",
                                   user="UREV1")
    value = proposal.json()["blocks"][1]["elements"][0]["value"]
    await slack.click(A.CONFIRM_FOLLOWUP, value, user="UREV1")
    await slack.settle()

    listed = await slack.command("followups", user="UCOACH1")
    assert "C-2026-0001" in listed.json()["text"] and "Fall River, MA" in listed.json()["text"]
    empty = await slack.command("followups", user="UREV2")
    assert empty.json()["text"] == "You have no follow-up calls coming up."

    slack.clock.set(datetime(2026, 12, 1, 19, 10, tzinfo=UTC))  # the call is under way
    listed = await slack.command("followups", user="UCOACH1")
    button = listed.json()["blocks"][1]["accessory"]
    assert button["action_id"] == A.OUTCOME
    await slack.click(A.OUTCOME, button["value"], user="UCOACH1")
    await slack.settle()
    view = slack.last_view()
    assert view["callback_id"] == "log_outcome"
    ok = await slack.submit(view, {
        "notes": {"text": {"value": "Walked through the rating criteria."}},
        "next": {"step": {"selected_option": {"value": "close"}}}}, user="UCOACH1")
    assert ok.status_code == 200
    await slack.settle()
    [call] = await followups(slack)
    assert call.status == "held" and call.outcome == "Walked through the rating criteria."
    assert (await slack.case()).status == "closed"
    assert any("Outcome logged" in t for t in slack.ephemerals("UCOACH1"))


async def test_stats_shows_the_headline_figures(slack: Slack) -> None:
    await answered_case(slack)
    response = await slack.command("stats", user="UREV1")
    assert response.status_code == 200
    await slack.settle()
    told = [r for r in slack.api.responses if r["name"] == "command"]
    assert told and told[-1]["text"].startswith("Last 30 days: 1 question")
    assert told[-1]["response_type"] == "ephemeral"
