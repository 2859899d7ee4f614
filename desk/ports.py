"""The ports the core is written against: small protocols the other packages implement.

``nlp`` implements :class:`Classifier`, ``knowledge`` implements :class:`Drafter`,
``mail`` and ``bot`` implement :class:`Channel`; tests and the SLA code use :class:`Clock`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "TOPICS",
    "Channel",
    "Classification",
    "Classifier",
    "Clock",
    "DeliveryReceipt",
    "DraftRequest",
    "Drafter",
    "Entity",
    "OutboundItem",
    "Package",
    "SystemClock",
    "TopicScore",
]

# Topic ids are part of the public contract (DESIGN.md).
TOPICS: tuple[str, ...] = (
    "budget_finance",
    "economic_development",
    "housing",
    "vacant_blighted_property",
    "public_safety",
    "infrastructure",
    "planning_zoning",
    "operations_performance",
    "governance_legal",
    "community_services",
)


@dataclass(frozen=True)
class TopicScore:
    topic: str
    score: float


@dataclass(frozen=True)
class Entity:
    """A span found in a question. ``label`` is one of CITY, STATE, MONEY, DATE, PROGRAM,
    AGENCY, ORG; ``value`` is a normalised form (``"2500000"`` for ``$2.5 million``)."""

    label: str
    text: str
    start: int
    end: int
    value: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "text": self.text, "start": self.start, "end": self.end,
                "value": self.value}


@dataclass(frozen=True)
class Classification:
    topics: list[TopicScore]  # 1-3, best first
    scores: dict[str, float]  # every topic id -> 0..1
    entities: list[Entity] = field(default_factory=list)
    urgency: float = 0.0  # 0 calm .. 1 emergency; orders review cards
    urgency_reasons: list[str] = field(default_factory=list)
    needs_triage: bool = False  # top score below the confidence threshold


@runtime_checkable
class Classifier(Protocol):
    def classify(self, text: str) -> Classification: ...

    def classify_many(self, texts: Sequence[str]) -> list[Classification]: ...


@dataclass(frozen=True)
class DraftRequest:
    case_ref: str
    question: str
    topics: list[str]
    entities: list[Entity] = field(default_factory=list)
    city: str | None = None
    state: str | None = None
    contact_name: str | None = None
    package_url: str | None = None  # the online page of this case's package


@dataclass
class Package:
    """A drafted resource package. ``resources``/``referrals``/``tools`` are JSON-ready dicts
    (each resource has at least ``title``, ``url``, ``annotation``, ``why``)."""

    resources: list[dict[str, Any]]
    referrals: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    text: str  # plain text for email
    html: str  # HTML alternative for email
    mrkdwn: str  # Slack

    def as_dict(self) -> dict[str, Any]:
        return {"resources": self.resources, "referrals": self.referrals, "tools": self.tools,
                "text": self.text, "html": self.html, "mrkdwn": self.mrkdwn}


class Drafter(Protocol):
    async def draft(self, request: DraftRequest) -> Package: ...


@dataclass(frozen=True)
class OutboundItem:
    """One outbox row handed to a channel. ``kind`` says what it is (ack, reply, decline,
    review_card, card_update, reminder, escalation, invite, notice); ``payload`` carries
    everything needed to render it."""

    id: int
    kind: str
    channel: str
    case_id: int | None
    case_ref: str | None
    idempotency_key: str
    payload: dict[str, Any]
    attempts: int = 1


@dataclass(frozen=True)
class DeliveryReceipt:
    external_id: str  # Message-ID of the sent mail, or "CHANNEL:ts" of the Slack message
    detail: dict[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    name: str

    async def deliver(self, item: OutboundItem) -> DeliveryReceipt:
        """Send one item. Raise TransientDeliveryError to retry later,
        PermanentDeliveryError to give up."""
        ...


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
