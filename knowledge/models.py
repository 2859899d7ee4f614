"""The library's tables. The migration desk/migrations/versions/0002_library.py mirrors them
and adds the full-text index of each backend (an FTS5 table with triggers on SQLite, a
generated tsvector column with a GIN index on PostgreSQL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from desk.models import Base

__all__ = ["LibraryMeta", "Referral", "Resource", "ResourceTopic", "Tool"]


class Resource(Base):
    __tablename__ = "resources"

    # An integer key for the FTS5 rowid; ``id`` is the stable public slug.
    num: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(120), unique=True)
    title: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    publisher: Mapped[str] = mapped_column(String(200))  # indexed as lower(publisher)
    year: Mapped[int | None] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(30), index=True)
    topics: Mapped[list[Any]] = mapped_column(default=list)  # 1-3 ids, primary first
    annotation: Mapped[str] = mapped_column(Text)
    audience: Mapped[str] = mapped_column(Text, default="")
    reviewed: Mapped[str | None] = mapped_column(String(10))  # ISO date
    keywords: Mapped[list[Any]] = mapped_column(default=list)
    keyword_text: Mapped[str] = mapped_column(Text, default="")  # what the full-text index sees
    sort_key: Mapped[str] = mapped_column(String(200), index=True)  # ASCII title for browsing
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ResourceTopic(Base):
    """One row per (resource, topic) so topic filters use an index on both backends."""

    __tablename__ = "resource_topics"

    resource_num: Mapped[int] = mapped_column(
        ForeignKey("resources.num", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(40), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # 0 = primary topic


class Referral(Base):
    __tablename__ = "referrals"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(30))
    topics: Mapped[list[Any]] = mapped_column(default=list)
    description: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    contact: Mapped[str] = mapped_column(String(2000), default="via website")
    updated_at: Mapped[datetime]


class Tool(Base):
    __tablename__ = "tools"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    publisher: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(30))
    topics: Mapped[list[Any]] = mapped_column(default=list)
    annotation: Mapped[str] = mapped_column(Text)
    keywords: Mapped[list[Any]] = mapped_column(default=list)
    updated_at: Mapped[datetime]


class LibraryMeta(Base):
    """Small facts about the loaded library, e.g. the fingerprint of the shipped seed files."""

    __tablename__ = "library_meta"

    key: Mapped[str] = mapped_column(String(60), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
