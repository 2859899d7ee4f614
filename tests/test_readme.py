"""The README documents every setting the service reads."""

from __future__ import annotations

from desk.settings import (
    DatabaseSettings,
    MailSettings,
    Settings,
    SlackSettings,
    SLASettings,
    WebSettings,
)
from tests.support import REPO

SECTIONS = [(Settings, "CITY311_"), (DatabaseSettings, "DATABASE_"), (MailSettings, "MAIL_"),
            (SlackSettings, "SLACK_"), (SLASettings, "SLA_"), (WebSettings, "WEB_")]


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    missing = [
        prefix + name.upper()
        for cls, prefix in SECTIONS
        for name in cls.model_fields
        if name not in {"database", "mail", "slack", "sla", "web"}
        and f"`{prefix}{name.upper()}`" not in readme
    ]
    assert not missing, f"README lacks {missing}"
