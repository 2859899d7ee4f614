"""The ``city311`` command. Bad input on any command: one line on stderr, non-zero exit."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from city311.logs import configure_logging
from city311.wiring import Service, build_service, build_store
from desk.directory import import_cities, read_cities_file, shipped_cities
from desk.errors import DeskError, InputError, check_unicode
from desk.migrate import downgrade, upgrade
from desk.redact import redact
from desk.settings import Settings, load_settings

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="311 for Cities: questions from city governments, answered.")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations.")
cities_app = typer.Typer(no_args_is_help=True, help="The directory of cities.")
sla_app = typer.Typer(no_args_is_help=True, help="The 3-business-day promise.")
app.add_typer(db_app, name="db")
app.add_typer(cities_app, name="cities")
app.add_typer(sla_app, name="sla")


def settings(*, service: bool = False) -> Settings:
    """The settings, and logging set up: one-shot commands only say what went wrong."""
    loaded = load_settings()
    level = loaded.log_level if service or loaded.log_level == "DEBUG" else "WARNING"
    configure_logging(level, secrets=(
        loaded.slack.bot_token, loaded.slack.signing_secret, loaded.slack.app_token,
        loaded.mail.imap_password, loaded.mail.smtp_password,
    ))
    return loaded


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def with_service(
    body: Callable[[Service], Awaitable[T]], *, with_classifier: bool = False,
    library: bool = True,
) -> T:
    service = await build_service(settings(), with_classifier=with_classifier)
    try:
        await _seed(service, library=library)
        return await body(service)
    finally:
        await service.close()


# ---- running -------------------------------------------------------------------------------

def _print_banner(service: Service, parts: str) -> None:
    channels = []
    mail = service.settings.mail
    channels.append(f"email intake {'on' if mail.intake_enabled else 'off'}")
    channels.append(f"email replies {'on' if 'email' in service.channels else 'off'}")
    slack = service.settings.slack
    mode = "socket mode" if slack.app_token else "http"
    channels.append(f"slack {'on (' + mode + ')' if 'slack' in service.channels else 'off'}")
    typer.echo(f"311 for Cities {parts}: {service.settings.web.public_url}")
    typer.echo("channels: " + ", ".join(channels))
    typer.echo(f"database: {service.store.dialect}")


async def _seed(service: Service, *, library: bool = True) -> None:
    """The embedded default has data: the network's first cities and the shipped library."""
    async with service.store.session() as session:
        empty = not await service.store.list_cities(session)
    if empty:
        await import_cities(service.store, shipped_cities(), service.clock.now())
    if library:
        from knowledge.library import ensure_seeded

        await ensure_seeded(service.store)


def _quiet_server() -> type[Any]:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """Our signal handlers stop web and worker together; uvicorn must not re-raise them."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


async def _serve(host: str | None, port: int | None, web: bool, worker: bool) -> None:
    import uvicorn

    from city311.web import build_app
    from city311.worker import Worker

    loaded = settings(service=True)
    if host:
        loaded.web.host = host
    if port:
        loaded.web.port = port
    # The web process drafts Slack questions as they arrive, so it classifies too.
    service = await build_service(loaded, long_running=True)
    stop = asyncio.Event()
    try:
        await _seed(service)
        _print_banner(service, "web and worker" if web and worker else "web" if web else
                      "worker")
        tasks: list[asyncio.Task[None]] = []
        if worker:
            tasks.append(asyncio.create_task(Worker(service).run(stop)))
        server = None
        if web:
            config = uvicorn.Config(build_app(service), host=loaded.web.host,
                                    port=loaded.web.port, log_config=None, lifespan="off")
            server = _quiet_server()(config)
        loop = asyncio.get_running_loop()

        def shutdown() -> None:
            stop.set()
            if server is not None:
                server.should_exit = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, shutdown)
        if server is not None:
            await server.serve()
            stop.set()
        else:
            await stop.wait()
        for task in tasks:
            await task
    finally:
        stop.set()
        await service.close()


@app.command()
def serve(host: str = typer.Option(None, help="bind address (WEB_HOST)"),
          port: int = typer.Option(None, help="port (WEB_PORT)")) -> None:
    """Web and worker in one process on the embedded default."""
    run(_serve(host, port, web=True, worker=True))


@app.command()
def web(host: str = typer.Option(None, help="bind address (WEB_HOST)"),
        port: int = typer.Option(None, help="port (WEB_PORT)")) -> None:
    """Only the web app (Slack endpoint, public library, package pages)."""
    run(_serve(host, port, web=True, worker=False))


@app.command()
def worker() -> None:
    """Only the worker (intake, drafting, delivery, reminders)."""
    run(_serve(None, None, web=False, worker=True))


# ---- database --------------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations (up to REVISION, default the newest)."""
    loaded = settings()
    build_store(loaded)  # creates the data dir for the embedded default
    upgrade(loaded.database_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(revision: str = typer.Argument(..., help="target, e.g. base or -1")) -> None:
    """Undo migrations down to REVISION."""
    downgrade(settings().database_url, revision)
    typer.echo(f"database at {revision}")


# ---- cities ----------------------------------------------------------------------------------

@cities_app.command("add")
def cities_add(name: str, state: str,
               domain: list[str] = typer.Option([], "--domain", help="email domain")) -> None:
    """Add a city (or add domains to it)."""
    if len(state) != 2 or not state.isalpha():
        raise InputError("STATE must be a two-letter postal code, e.g. MA")

    async def body(service: Service) -> str:
        async with service.store.session() as session:
            city = await service.store.add_city(session, name.strip(), state, domain,
                                                service.clock.now())
            return f"{city.label}: {', '.join(d.domain for d in city.domains) or 'no domains'}"

    typer.echo(run(with_service(body, library=False)))


@cities_app.command("list")
def cities_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """The cities in the directory."""

    async def body(service: Service) -> list[dict[str, Any]]:
        async with service.store.session() as session:
            return [{"name": c.name, "state": c.state,
                     "domains": [d.domain for d in c.domains]}
                    for c in await service.store.list_cities(session)]

    rows = run(with_service(body, library=False))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['name']}, {row['state']}\t{' '.join(row['domains'])}")


@cities_app.command("import")
def cities_import(file: Path) -> None:
    """Import cities from a CSV with columns name, state, domains (separated by ;)."""
    rows = read_cities_file(file)

    async def body(service: Service) -> int:
        return await import_cities(service.store, rows, service.clock.now())

    typer.echo(f"imported {run(with_service(body, library=False))} cities")


# ---- SLA -------------------------------------------------------------------------------------

@sla_app.command("due")
def sla_due(received: str = typer.Option(..., "--received", help="ISO 8601 instant"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """When the initial response to a question received at RECEIVED is due."""
    from desk.sla import BusinessCalendar

    try:
        instant = datetime.fromisoformat(received.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"--received: not an ISO 8601 date and time: {received!r}") from exc
    calendar = BusinessCalendar(settings().sla)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=calendar.zone)
    due = calendar.due(instant)
    local = calendar.local(due)
    hours = calendar.allowance.total_seconds() / 3600
    if as_json:
        typer.echo(json.dumps({
            "received": instant.isoformat(), "starts": calendar.local(
                calendar.next_open(instant)).isoformat(),
            "due": local.isoformat(), "due_utc": due.astimezone(UTC).isoformat(),
            "business_hours": hours, "business_days": calendar.business_days,
            "timezone": str(calendar.zone), "text": calendar.describe(due),
        }))
        return
    typer.echo(f"{local.isoformat()}  ({calendar.describe(due)}; {hours:g} business hours)")


# ---- ask ---------------------------------------------------------------------------------

@app.command()
def ask(text: str = typer.Argument(..., help="the question"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Classify a question and draft its package, without sending anything."""
    if not text.strip():
        raise InputError("the question is empty")
    check_unicode(text, "the question")
    from desk.ports import DraftRequest

    async def body(service: Service) -> dict[str, Any]:
        result = service.desk.classify(text)
        topics = [t.topic for t in result.topics]
        out: dict[str, Any] = {
            "topics": [{"topic": t.topic, "score": round(t.score, 4)} for t in result.topics],
            "scores": {k: round(v, 4) for k, v in result.scores.items()},
            "entities": [e.as_dict() for e in result.entities],
            "urgency": result.urgency, "urgency_reasons": result.urgency_reasons,
            "needs_triage": result.needs_triage,
            "resources": [], "referrals": [], "tools": [], "text": "",
        }
        drafter = service.desk.drafter
        if drafter is not None:
            package = await drafter.draft(DraftRequest(
                case_ref="(preview)", question=text, topics=topics, entities=result.entities))
            out.update(resources=package.resources, referrals=package.referrals,
                       tools=package.tools, text=package.text)
        return out

    out = run(with_service(body, with_classifier=True))
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo("topics: " + ", ".join(f"{t['topic']} ({t['score']:.2f})" for t in out["topics"]))
    if out["needs_triage"]:
        typer.echo("needs triage: no topic stands out; these are the three best guesses")
    if out["urgency"] > 0:
        typer.echo(f"urgency: {out['urgency']:.2f} ({'; '.join(out['urgency_reasons'])})")
    if out["entities"]:
        typer.echo("entities: " + ", ".join(f"{e['label']}={e['text']}"
                                            for e in out["entities"]))
    if out["text"]:
        typer.echo("")
        typer.echo(out["text"])


def _register_parts() -> None:
    # The command modules use the helpers above, so they are imported once this one is.
    for module in ("city311.cmd_nlp", "city311.cmd_mail", "city311.cmd_library",
                   "city311.cmd_cases", "city311.cmd_report"):
        importlib.import_module(module).register(app)


_register_parts()


def main() -> None:
    try:
        # Without standalone mode click returns typer.Exit's code instead of exiting.
        result = app(standalone_mode=False)
        if isinstance(result, int) and result:
            sys.exit(result)
    except DeskError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        _database_error(exc)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        from alembic.util import CommandError

        if isinstance(exc, CommandError):
            _database_error(exc)
        # Usage errors come from typer's own copy of click: duck-type them.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if isinstance(exc, OSError | ValueError | ImportError):
            typer.echo(f"error: {redact(str(exc)) or type(exc).__name__}", err=True)
            sys.exit(1)
        raise


def _database_error(exc: Exception) -> None:
    detail = getattr(exc, "orig", None) or exc
    first = str(detail).strip().splitlines()[0] if str(detail).strip() else type(exc).__name__
    typer.echo(f"error: database (DATABASE_URL): {redact(first)}", err=True)
    sys.exit(2)
