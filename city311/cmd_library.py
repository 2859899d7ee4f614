"""``city311 library``: search, stats, import, export and validate the resource library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from desk.errors import InputError

__all__ = ["register"]

library_app = typer.Typer(no_args_is_help=True, help="The resource library.")


def _run(body: Any) -> Any:
    # Imported late: city311.cli imports this module while it is being set up.
    from city311.cli import run, with_service

    return run(with_service(body))


@library_app.command("search")
def search(
    query: str = typer.Argument("", help="words to search for; empty lists everything"),
    topic: str = typer.Option(None, "--topic", help="only this topic id"),
    kind: str = typer.Option(None, "--kind", help="only this kind (guide, toolkit, …)"),
    publisher: str = typer.Option(None, "--publisher", help="only this publisher"),
    year: str = typer.Option(None, "--year", help="only this year"),
    limit: int = typer.Option(10, "--limit", min=1, max=100, help="how many results"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search the library (typos are forgiven)."""
    from knowledge.library import Filters, clean_query, library_for

    clean_query(query)  # a bad query fails before the database is opened
    filters = Filters.parse(topic=topic, kind=kind, publisher=publisher, year=year)

    async def body(service: Any) -> dict[str, Any]:
        result = await library_for(service.store).search(query, filters, per_page=limit)
        return result.as_dict()

    out = _run(body)
    if as_json:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    if out["corrected_query"]:
        typer.echo(f"showing results for: {out['corrected_query']}")
    if not out["results"]:
        typer.echo("no resources found")
    for i, hit in enumerate(out["results"], 1):
        year_text = f", {hit['year']}" if hit["year"] else ""
        typer.echo(f"{i:>2}. {hit['title']} ({hit['publisher']}{year_text}) [{hit['kind']}]")
        typer.echo(f"    {hit['url']}")
    suffix = "+" if out["total_is_capped"] else ""
    typer.echo(f"{out['total']}{suffix} matching", err=True)


@library_app.command("stats")
def stats(as_json: bool = typer.Option(False, "--json")) -> None:
    """Counts of resources per topic and kind."""
    from knowledge.library import library_for

    async def body(service: Any) -> dict[str, Any]:
        return await library_for(service.store).stats()

    out = _run(body)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(f"{out['resources']} resources, {out['referrals']} referrals, "
               f"{out['tools']} tools")
    for name in ("topics", "kinds"):
        typer.echo(f"{name}:")
        for key, count in out[name].items():
            typer.echo(f"  {key:<28}{count:>6}")


@library_app.command("import")
def import_(file: Path = typer.Argument(..., help="a .csv, .json, .yaml or .yml file")) -> None:
    """Add or update entries (matched by id, else by URL) after checking them."""
    from knowledge.library import library_for
    from knowledge.records import check, find_problems, read_file

    data = check(read_file(file))  # InputError names the first blocking problem
    warnings = [p for p in find_problems(data) if not p.fatal]

    async def body(service: Any) -> dict[str, int]:
        return await library_for(service.store).upsert(data, now=service.clock.now())

    counts = _run(body)
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"imported {len(data)} entries: {counts['inserted']} new, "
               f"{counts['updated']} updated")


@library_app.command("export")
def export(
    fmt: str = typer.Option("yaml", "--format", help="yaml, json or csv"),
    output: Path = typer.Option(None, "--output", "-o", help="write here instead of stdout"),
) -> None:
    """The whole library as YAML, JSON or CSV (import takes the same files back)."""
    from knowledge.library import library_for
    from knowledge.records import dump

    if fmt not in ("yaml", "json", "csv"):
        raise InputError(f"--format must be yaml, json or csv, not {fmt!r}")

    async def body(service: Any) -> str:
        return dump(await library_for(service.store).export(), fmt)

    text = _run(body)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{output}: {exc.strerror}") from None
    typer.echo(f"wrote {output}", err=True)


@library_app.command("validate")
def validate(
    file: Path = typer.Argument(None, help="check this file instead of the stored library"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Near-duplicate titles, malformed or duplicate URLs, missing topics; exit 1 on any."""
    from knowledge.library import library_for
    from knowledge.records import find_problems, read_file

    if file is not None:
        data = read_file(file)
    else:
        async def body(service: Any) -> Any:
            return await library_for(service.store).export()

        data = _run(body)
    problems = find_problems(data)
    if as_json:
        typer.echo(json.dumps([{"section": p.section, "id": p.ident, "problem": p.message,
                                "blocking": p.fatal} for p in problems], indent=2))
    else:
        for problem in problems:
            typer.echo(str(problem))
        typer.echo(f"{len(data)} entries checked, {len(problems)} problems", err=True)
    if problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(library_app, name="library")
