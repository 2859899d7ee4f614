"""Database migrations (Alembic), callable from the CLI and from tests."""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "downgrade", "upgrade", "upgrade_async"]


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("desk") / "migrations"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Run in a thread of its own: the Alembic environment starts its own event loop."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)
