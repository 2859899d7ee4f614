"""`city311 cases`: look at and act on cases from the terminal (useful without Slack)."""

from __future__ import annotations

import getpass
import json
from typing import Any

import typer
from sqlalchemy import select

from city311.cli import run, with_service
from city311.wiring import Service
from desk.models import Case, Event
from desk.workflow import Status

__all__ = ["register"]


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _summary(case: Case) -> dict[str, Any]:
    return {
        "ref": case.ref, "status": case.status, "channel": case.channel,
        "city": case.city.label if case.city else None,
        "topics": [t["topic"] for t in case.topics], "received_at": case.received_at.isoformat(),
        "due_at": case.due_at.isoformat(),
        "first_response_at": case.first_response_at.isoformat() if case.first_response_at
        else None, "subject": case.subject,
    }


def register(app: typer.Typer) -> None:
    cases = typer.Typer(no_args_is_help=True, help="Cases: list, show, approve, reject, close.")
    app.add_typer(cases, name="cases")

    @cases.command("list")
    def list_cases(status: str = typer.Option(None, help="only cases with this status"),
                   limit: int = typer.Option(50, min=1, max=1000),
                   as_json: bool = typer.Option(False, "--json")) -> None:
        """The newest cases."""
        if status is not None and status not in {s.value for s in Status}:
            raise typer.BadParameter(f"unknown status {status!r}", param_hint="--status")

        async def body(service: Service) -> list[dict[str, Any]]:
            async with service.store.session() as session:
                query = select(Case).order_by(Case.id.desc()).limit(limit)
                if status:
                    query = query.where(Case.status == status)
                return [_summary(c) for c in (await session.execute(query)).scalars()]

        rows = run(with_service(body, library=False))
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        for row in rows:
            typer.echo(f"{row['ref']}  {row['status']:<20} {row['channel']:<6} "
                       f"{row['city'] or 'unknown city':<22} due {row['due_at'][:16]}  "
                       f"{row['subject'] or ''}")

    @cases.command("show")
    def show(ref: str, as_json: bool = typer.Option(False, "--json")) -> None:
        """One case: its question, latest draft and history."""

        async def body(service: Service) -> dict[str, Any]:
            async with service.store.session() as session:
                case = await service.store.find_case(session, ref)
                if case is None:
                    from desk.errors import NotFoundError

                    raise NotFoundError(f"no case {ref}")
                draft = await service.desk.latest_draft(session, case.id)
                events = (await session.execute(select(Event).where(Event.case_id == case.id)
                                                .order_by(Event.id))).scalars().all()
                return {**_summary(case), "question": case.question,
                        "draft": draft.text if draft else None,
                        "history": [{"at": e.at.isoformat(), "actor": e.actor, "kind": e.kind}
                                    for e in events]}

        data = run(with_service(body, library=False))
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        typer.echo(f"{data['ref']} ({data['status']}) {data['city'] or 'unknown city'}")
        typer.echo(f"due {data['due_at']}\n\n{data['question']}\n")
        if data["draft"]:
            typer.echo("--- draft ---\n" + data["draft"])
        for event in data["history"]:
            typer.echo(f"{event['at'][:19]}  {event['actor']:<20} {event['kind']}")

    @cases.command("approve")
    def approve(ref: str) -> None:
        """Approve the latest draft and send it on the case's channel."""

        async def body(service: Service) -> str:
            case = await service.desk.approve(ref, _actor())
            return f"{case.ref} approved; the reply is queued for {case.channel}"

        typer.echo(run(with_service(body, library=False)))

    @cases.command("reject")
    def reject(ref: str, reason: str = typer.Option(..., help="why"),
               decline: bool = typer.Option(False, help="send the city a polite decline")) -> None:
        """Reject a case."""

        async def body(service: Service) -> str:
            case = await service.desk.reject(ref, _actor(), reason, send_decline=decline)
            return f"{case.ref} rejected"

        typer.echo(run(with_service(body, library=False)))

    @cases.command("close")
    def close(ref: str, note: str = typer.Option("", help="a closing note")) -> None:
        """Close an answered case."""

        async def body(service: Service) -> str:
            case = await service.desk.close(ref, _actor(), note)
            return f"{case.ref} closed"

        typer.echo(run(with_service(body, library=False)))
