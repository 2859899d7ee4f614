"""Rendering a drafted package as email text, email HTML (Jinja2, autoescaped) and Slack
mrkdwn. Text from the question and from the city is escaped wherever it lands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from desk.ports import DraftRequest, Package
from knowledge.labels import kind_label, topic_label

if TYPE_CHECKING:
    from knowledge.drafting import Selection

__all__ = ["FOLLOW_UP_OFFER", "environment", "render_package", "slack_escape", "understood"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
FOLLOW_UP_OFFER = (
    "Would a follow-up coaching call help? Reply to this message with two or three times that "
    "suit you, and one of our coaches will call to talk your question through."
)
EXCERPT_CHARS = 280


def slack_escape(text: object) -> str:
    """Slack's three control characters; user text can then never ping or link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, title: str) -> str:
    # The title may not contain a pipe inside <url|title>; the URL must not hold spaces.
    return f"<{slack_escape(url)}|{slack_escape(title).replace('|', '¦')}>"


def _excerpt(question: str) -> str:
    flat = " ".join(question.split())
    if len(flat) <= EXCERPT_CHARS:
        return flat
    return flat[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=True,
                                     default=False),
        undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["slack"] = slack_escape
    env.filters["slack_link"] = _slack_link
    env.filters["topic_label"] = topic_label
    env.filters["kind_label"] = kind_label
    return env


_ENV = environment()


def understood(topics: list[str], city: str | None, state: str | None) -> dict[str, Any]:
    place = ", ".join(p for p in (city, state) if p) or None
    labels = [topic_label(t).lower() for t in topics]
    if len(labels) > 1:
        about = ", ".join(labels[:-1]) + " and " + labels[-1]
    else:
        about = labels[0] if labels else "your question"
    return {"topics": labels, "about": about, "place": place}


def render_package(request: DraftRequest, selection: Selection) -> Package:
    context = {
        "request": request,
        "greeting": request.contact_name.split()[0] if request.contact_name and
        request.contact_name.strip() else None,
        "understood": understood(request.topics, request.city, request.state),
        "excerpt": _excerpt(request.question),
        "resources": selection.resources, "referrals": selection.referrals,
        "tools": selection.tools, "follow_up": FOLLOW_UP_OFFER,
        "case_ref": request.case_ref, "package_url": request.package_url,
    }
    text = _ENV.get_template("package.txt").render(context)
    html = _ENV.get_template("package.html").render(context)
    mrkdwn = _ENV.get_template("package.mrkdwn").render(context)
    return Package(resources=selection.resources, referrals=selection.referrals,
                   tools=selection.tools, text=text, html=html, mrkdwn=mrkdwn)
