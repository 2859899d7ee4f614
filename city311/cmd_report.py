"""`city311 report`: volume, time to first response, SLA compliance; as a table, CSV, JSON or
a chart (PNG)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from desk.errors import InputError

if TYPE_CHECKING:
    from city311.wiring import Service
    from desk.reports import Report

__all__ = ["register", "render_chart", "render_csv", "render_table"]


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to ``app``."""

    @app.command("report")
    def report(
        since: str | None = typer.Option(None, "--since", help="first day, YYYY-MM-DD (included)"),
        until: str | None = typer.Option(None, "--until", help="last day, YYYY-MM-DD (included)"),
        output: Format = typer.Option(Format.table, "--format", help="table, csv or json"),
        chart: Path | None = typer.Option(None, "--chart",
                                          help="also draw the weekly chart to a PNG"),
    ) -> None:
        """Cases by topic, city and channel; time to first response; SLA compliance."""
        first, last = _day(since, "--since"), _day(until, "--until")
        if first and last and first > last:
            raise InputError("--since must not be after --until")
        if chart is not None and chart.suffix.lower() != ".png":
            raise InputError(f"--chart: write a .png file, not {chart.name!r}")
        # Imported here: the CLI module imports this one while it is being built.
        from city311.cli import run, with_service
        from desk.reports import build_report

        async def body(service: Service) -> Report:
            return await build_report(service.store, service.calendar, since=first,
                                      until=last, now=service.clock.now())

        result = run(with_service(body))
        if output is Format.json:
            typer.echo(json.dumps(result.as_dict(), indent=2))
        elif output is Format.csv:
            typer.echo(render_csv(result), nl=False)
        else:
            render_table(result)
        if chart is not None:
            render_chart(result, chart)
            typer.echo(f"chart written to {chart}", err=output is not Format.table)


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{option}: not a date (YYYY-MM-DD): {value!r}") from None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} h"


def render_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    period = (f"{report.since or 'the beginning'} to {report.until or 'today'}"
              f" ({report.timezone})")
    summary = Table(title=f"311 for Cities: {period}", show_header=False)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    summary.add_row("Questions received", str(report.cases))
    summary.add_row("Answered", str(report.answered))
    summary.add_row("Median time to first response", _hours(report.median_hours))
    summary.add_row("90th percentile", _hours(report.p90_hours))
    summary.add_row("Within the 3-business-day promise",
                    f"{_pct(report.compliance)} ({report.met} of "
                    f"{report.answered + report.open_late_in_period})")
    summary.add_row("Follow-up calls held", str(report.followups_held))
    summary.add_row("Open now (awaiting a first response)", str(report.open_now))
    summary.add_row("Late now", str(report.late_now))
    console.print(summary)
    for title, counts in (("By topic", report.by_topic), ("By city", report.by_city),
                          ("By channel", report.by_channel)):
        table = Table(title=title)
        table.add_column(title.removeprefix("By ").capitalize())
        table.add_column("Cases", justify="right")
        table.add_column("Share", justify="right")
        for name, count in counts.items():
            table.add_row(name, str(count), _pct(count / report.cases if report.cases else None))
        console.print(table)
    if report.weekly:
        weekly = Table(title="By week")
        for column in ("Week", "Starts", "Cases", "Answered", "On time", "Compliance"):
            weekly.add_column(column, justify="left" if column in ("Week", "Starts") else
                              "right")
        for week in report.weekly:
            weekly.add_row(week.week, week.starts.isoformat(), str(week.cases),
                           str(week.answered), str(week.met), _pct(week.compliance))
        console.print(weekly)


def render_csv(report: Report) -> str:
    """Long format, one figure a row: section, key, subkey, value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", "key", "subkey", "value"])
    data = report.as_dict()
    writer.writerow(["period", "since", "", data["since"] or ""])
    writer.writerow(["period", "until", "", data["until"] or ""])
    writer.writerow(["summary", "cases", "", report.cases])
    for section, key in (("topic", "by_topic"), ("city", "by_city"), ("channel", "by_channel")):
        for name, count in data[key].items():
            writer.writerow([section, name, "", count])
    for key, value in data["first_response_hours"].items():
        writer.writerow(["first_response_hours", key, "", _blank(value)])
    for key, value in data["sla"].items():
        writer.writerow(["sla", key, "", _blank(value)])
    for key in ("followups_held", "open_now", "late_now"):
        writer.writerow(["summary", key, "", data[key]])
    for week in report.weekly:
        for topic, count in week.by_topic.items():
            writer.writerow(["weekly_volume", week.week, topic, count])
        writer.writerow(["weekly_sla", week.week, "compliance", _blank(week.compliance)])
    return out.getvalue()


def _blank(value: Any) -> Any:
    return "" if value is None else value


def render_chart(report: Report, path: Path) -> None:
    """Weekly volume by topic (stacked bars) over SLA compliance (line), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    weeks = report.weekly
    labels = [f"{w.week[-3:]}\n{w.starts:%b %d}" for w in weeks]
    topics = list(report.by_topic)
    figure, (volume, sla) = plt.subplots(
        2, 1, figsize=(11, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    try:
        positions = list(range(len(weeks)))
        bottoms = [0] * len(weeks)
        palette = plt.get_cmap("tab20")  # strong shades first, then their light pairs
        colours = [palette(i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
        for index, topic in enumerate(topics):
            heights = [w.by_topic.get(topic, 0) for w in weeks]
            volume.bar(positions, heights, bottom=bottoms, label=topic.replace("_", " "),
                       color=colours[index % len(colours)], width=0.7)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        volume.set_ylim(0, max([*bottoms, 1]) * 1.15)  # headroom above the tallest bar
        volume.set_ylabel("questions received")
        volume.set_title("Questions per week, by primary topic")
        volume.yaxis.set_major_locator(MaxNLocator(integer=True))
        if topics:
            volume.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                          frameon=False)
        volume.grid(axis="y", alpha=0.3)
        points = [(p, w.compliance) for p, w in zip(positions, weeks, strict=True)
                  if w.compliance is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            sla.plot(xs, [y * 100 for y in ys], marker="o", color="#1f6f8b", linewidth=2,
                     label="answered within 3 business days")
        sla.axhline(100, color="grey", linestyle="--", linewidth=1)
        sla.set_ylim(-5, 105)
        sla.yaxis.set_major_formatter(PercentFormatter())
        sla.set_ylabel("SLA compliance")
        sla.set_title("Share answered within the promise, by week received")
        sla.grid(axis="y", alpha=0.3)
        sla.set_xticks(positions, labels)
        if not weeks:
            volume.text(0.5, 0.5, "no questions in this period", ha="center",
                        transform=volume.transAxes)
        figure.suptitle(f"311 for Cities: {report.cases} questions"
                        + (f", {report.since} to {report.until}" if report.since else ""))
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110, format="png")
    finally:
        plt.close(figure)
