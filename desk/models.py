"""The database schema (SQLAlchemy 2 ORM). Migrations in desk/migrations mirror it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Attachment",
    "Base",
    "Case",
    "City",
    "CityDomain",
    "Contact",
    "Correction",
    "Counter",
    "Draft",
    "Event",
    "FollowUp",
    "MailboxState",
    "Message",
    "Outbox",
    "SeenEvent",
    "UTCDateTime",
]

# Stable constraint names so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use an aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime()}


class City(Base):
    __tablename__ = "cities"
    __table_args__ = (UniqueConstraint("name", "state", name="uq_cities_name_state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    state: Mapped[str] = mapped_column(String(2))
    created_at: Mapped[datetime]
    # Loaded only where listed (store.list_cities, store.add_city): every case load would
    # otherwise pay for a city's domains through Case.city.
    domains: Mapped[list[CityDomain]] = relationship(
        back_populates="city", cascade="all, delete-orphan", lazy="raise_on_sql"
    )

    @property
    def label(self) -> str:
        return f"{self.name}, {self.state}"


class CityDomain(Base):
    __tablename__ = "city_domains"

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int] = mapped_column(ForeignKey("cities.id", ondelete="CASCADE"), index=True)
    domain: Mapped[str] = mapped_column(String(253), unique=True)
    city: Mapped[City] = relationship(back_populates="domains")


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    city_id: Mapped[int | None] = mapped_column(ForeignKey("cities.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    slack_user_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    phone: Mapped[str | None] = mapped_column(String(40))
    bouncing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(20), unique=True)
    channel: Mapped[str] = mapped_column(String(10))  # email | slack
    # Email: the Message-ID of the first message; Slack: "CHANNEL:thread_ts".
    thread_key: Mapped[str] = mapped_column(String(998), index=True)
    status: Mapped[str] = mapped_column(String(24), index=True)
    subject: Mapped[str | None] = mapped_column(Text)
    question: Mapped[str] = mapped_column(Text)
    city_id: Mapped[int | None] = mapped_column(ForeignKey("cities.id"), index=True)
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id"), index=True)
    topics: Mapped[list[Any]] = mapped_column(default=list)  # [{"topic", "score"}], best first
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    entities: Mapped[list[Any]] = mapped_column(default=list)
    urgency: Mapped[float] = mapped_column(Float, default=0.0)
    triage_reason: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
    clock_started_at: Mapped[datetime]  # receipt, or the reopening for a reopened case
    due_at: Mapped[datetime] = mapped_column(index=True)
    first_response_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    assignee: Mapped[str | None] = mapped_column(String(64))  # Slack user id
    coach: Mapped[str | None] = mapped_column(String(64))  # Slack user id
    package_token: Mapped[str] = mapped_column(String(64), unique=True)
    review_channel: Mapped[str | None] = mapped_column(String(64))
    review_ts: Mapped[str | None] = mapped_column(String(32))
    cycle: Mapped[int] = mapped_column(Integer, default=1)  # increments when a case reopens
    # A worker holds a case while classifying and drafting it; expired leases are taken over.
    lease_until: Mapped[datetime | None]
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    city: Mapped[City | None] = relationship(lazy="selectin")
    contact: Mapped[Contact | None] = relationship(lazy="selectin")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("channel", "external_id", name="uq_messages_channel_external_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    channel: Mapped[str] = mapped_column(String(10))
    external_id: Mapped[str] = mapped_column(String(998))
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    sender: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text, default="")
    reply_text: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    # The parsed envelope (JSON) so the slow path can run again after a crash.
    envelope: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime]
    processed_at: Mapped[datetime | None] = mapped_column(index=True)
    problems: Mapped[list[Any]] = mapped_column(default=list)
    # Routing that keeps failing is set aside after a few tries and reported, so one bad
    # message never blocks the ones behind it.
    route_attempts: Mapped[int] = mapped_column(Integer, default=0)
    route_error: Mapped[str | None] = mapped_column(Text)


class Attachment(Base):
    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int]
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    refused_reason: Mapped[str | None] = mapped_column(Text)


class Draft(Base):
    __tablename__ = "drafts"
    __table_args__ = (UniqueConstraint("case_id", "version", name="uq_drafts_case_id_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    version: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    html: Mapped[str] = mapped_column(Text, default="")
    mrkdwn: Mapped[str] = mapped_column(Text, default="")
    package: Mapped[dict[str, Any]] = mapped_column(default=dict)
    topics: Mapped[list[Any]] = mapped_column(default=list)
    author: Mapped[str] = mapped_column(String(64))  # "system" or a Slack user id
    created_at: Mapped[datetime]


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(24))
    to_status: Mapped[str | None] = mapped_column(String(24))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Outbox(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(24))
    channel: Mapped[str] = mapped_column(String(10))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(10), index=True)  # pending|sending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # The first failed attempt of the current run of failures (None once one succeeds).
    failing_since: Mapped[datetime | None]
    external_id: Mapped[str | None] = mapped_column(String(998))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]


class FollowUp(Base):
    __tablename__ = "followups"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    uid: Mapped[str] = mapped_column(String(200), unique=True)  # stable iCalendar UID
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    coach: Mapped[str] = mapped_column(String(64))
    coach_email: Mapped[str | None] = mapped_column(String(320))
    starts_at: Mapped[datetime] = mapped_column(index=True)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=30)
    phone: Mapped[str | None] = mapped_column(String(40))
    agenda: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12))  # scheduled | cancelled | held
    outcome: Mapped[str | None] = mapped_column(Text)
    next_step: Mapped[str | None] = mapped_column(String(20))
    coach_reminded_at: Mapped[datetime | None]
    contact_reminded_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Correction(Base):
    """A reviewer's topic change, kept to retrain the classifier."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    topics: Mapped[list[Any]] = mapped_column(default=list)
    previous: Mapped[list[Any]] = mapped_column(default=list)
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class MailboxState(Base):
    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class SeenEvent(Base):
    """Slack event ids already handled (Slack retries deliveries)."""

    __tablename__ = "seen_events"

    event_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    at: Mapped[datetime]


class Counter(Base):
    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
