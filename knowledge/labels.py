"""User-facing words for topics and kinds, kept in one place."""

from __future__ import annotations

__all__ = [
    "KIND_LABELS",
    "REFERRAL_KINDS",
    "RESOURCE_KINDS",
    "TOOL_KINDS",
    "TOPIC_LABELS",
    "kind_label",
    "kind_noun",
    "topic_label",
]

TOPIC_LABELS: dict[str, str] = {
    "budget_finance": "Budget and finance",
    "economic_development": "Economic development",
    "housing": "Housing",
    "vacant_blighted_property": "Vacant and blighted property",
    "public_safety": "Public safety",
    "infrastructure": "Infrastructure",
    "planning_zoning": "Planning and zoning",
    "operations_performance": "Operations and performance",
    "governance_legal": "Governance and legal",
    "community_services": "Community services",
}

RESOURCE_KINDS: tuple[str, ...] = (
    "guide", "toolkit", "case_study", "data", "template", "training", "funding_program",
)
REFERRAL_KINDS: tuple[str, ...] = (
    "expert_organization", "peer_program", "federal_agency", "university",
)
TOOL_KINDS: tuple[str, ...] = ("calculator", "template", "checklist", "dataset", "dashboard")

KIND_LABELS: dict[str, str] = {
    "guide": "Guide",
    "toolkit": "Toolkit",
    "case_study": "Case study",
    "data": "Data",
    "template": "Template",
    "training": "Training",
    "funding_program": "Funding program",
    "expert_organization": "Expert organization",
    "peer_program": "Peer program",
    "federal_agency": "Federal agency",
    "university": "University",
    "calculator": "Calculator",
    "checklist": "Checklist",
    "dataset": "Dataset",
    "dashboard": "Dashboard",
}


def topic_label(topic: str) -> str:
    return TOPIC_LABELS.get(topic, topic.replace("_", " ").capitalize())


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind.replace("_", " ").capitalize())


# A kind inside a sentence ("A data resource from HUD that..."): a label that is not a countable
# noun ("Data") would read "A data from HUD".
_KIND_NOUNS: dict[str, str] = {"data": "data resource"}


def kind_noun(kind: str) -> str:
    """The kind as a countable noun in lower case, with its article: "a guide", "an expert
    organization", "a university" (the article goes by sound)."""
    noun = _KIND_NOUNS.get(kind, kind_label(kind).lower())
    vowel_sound = noun[0] in "aeiou" and not noun.startswith(("uni", "use", "eu"))
    return f"{'an' if vowel_sound else 'a'} {noun}"
