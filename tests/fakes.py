"""In-memory doubles of our own ports, for unit tests of desk/ only (adapters use real servers)."""

from __future__ import annotations

from collections.abc import Sequence

from desk.errors import PermanentDeliveryError, TransientDeliveryError
from desk.ports import (
    TOPICS,
    Classification,
    DeliveryReceipt,
    DraftRequest,
    OutboundItem,
    Package,
    TopicScore,
)


class KeywordClassifier:
    """Picks topics by keywords; confident only when a keyword matches."""

    KEYWORDS = {"bond": "budget_finance", "budget": "budget_finance", "crime": "public_safety",
                "zoning": "planning_zoning", "housing": "housing", "demolition":
                "vacant_blighted_property", "jobs": "economic_development"}

    def classify(self, text: str) -> Classification:
        found = list(dict.fromkeys(t for k, t in self.KEYWORDS.items() if k in text.lower()))
        scores = dict.fromkeys(TOPICS, 0.05)
        for rank, topic in enumerate(found):
            scores[topic] = 0.9 - rank * 0.1
        best = sorted(scores, key=lambda t: -scores[t])[: max(1, min(3, len(found)))]
        return Classification(topics=[TopicScore(t, scores[t]) for t in best], scores=scores,
                              needs_triage=not found)

    def classify_many(self, texts: Sequence[str]) -> list[Classification]:
        return [self.classify(t) for t in texts]


class EchoDrafter:
    async def draft(self, request: DraftRequest) -> Package:
        text = f"Resources for {', '.join(request.topics) or 'your question'} ({request.case_ref})"
        return Package(resources=[{"title": "Guide", "url": "https://example.org/guide",
                                   "annotation": "a guide", "why": "it helps"}],
                       referrals=[], tools=[], text=text, html=f"<p>{text}</p>", mrkdwn=text)


class RecordingChannel:
    """Fails the first ``transient`` deliveries, then records every delivered item."""

    def __init__(self, name: str, transient: int = 0, permanent: bool = False) -> None:
        self.name = name
        self.transient = transient
        self.permanent = permanent
        self.delivered: list[OutboundItem] = []

    async def deliver(self, item: OutboundItem) -> DeliveryReceipt:
        if self.permanent:
            raise PermanentDeliveryError("550 no such user", channel=self.name, code=550)
        if self.transient > 0:
            self.transient -= 1
            raise TransientDeliveryError("try later", channel=self.name, retry_after=0.001)
        self.delivered.append(item)
        if self.name == "slack":
            return DeliveryReceipt(external_id=f"CREVIEW:{1000 + len(self.delivered)}.0001")
        return DeliveryReceipt(external_id=f"<out-{item.id}@311.test>")
