"""Settings: one object, built once at the entry point and passed down.

This is the only module that reads the environment. Every variable is listed in the README.
"""

from __future__ import annotations

import ipaddress
import ssl
from datetime import date, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from desk.errors import ConfigError

__all__ = [
    "DatabaseSettings",
    "MailSettings",
    "SLASettings",
    "Settings",
    "SlackSettings",
    "WebSettings",
    "load_settings",
]

_COMMON = {"extra": "ignore", "env_file": None, "validate_default": True}


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "city311"


_SCHEMES = {"sqlite", "sqlite+aiosqlite", "postgres", "postgresql", "postgresql+asyncpg"}


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATABASE_", **_COMMON)  # type: ignore[typeddict-item]

    url: str = Field(default="", description="SQLAlchemy URL; empty means SQLite in the data dir")
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if value and scheme not in _SCHEMES:
            raise ValueError("must be a sqlite:// or postgresql:// URL")
        return value


class MailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAIL_", **_COMMON)  # type: ignore[typeddict-item]

    address: str = Field(default="", description="the 311 address cities write to")
    from_name: str = "311 for Cities"
    imap_host: str = ""
    imap_port: int = 993
    imap_security: Literal["tls", "starttls", "plain"] = "tls"
    imap_user: str = ""
    imap_password: str = ""
    imap_mailbox: str = "INBOX"
    # Move handled mail to this folder; empty: flag it \Seen and leave it.
    imap_done_folder: str = ""
    imap_poll_seconds: float = 60.0
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_security: Literal["tls", "starttls", "plain"] = "starttls"
    smtp_user: str = ""
    smtp_password: str = ""
    # A password over an unencrypted connection to another machine is refused unless this
    # says the network in between is trusted.
    allow_plaintext_login: bool = False
    # PEM bundle of the certificate authorities the IMAP and SMTP servers are checked
    # against (a private CA); empty: the system's.
    ca_file: Path | None = None
    max_attachment_bytes: int = 10_000_000
    ack_per_sender_per_hour: int = 5

    @field_validator("ca_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("ca_file")
    @classmethod
    def _loads(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context(cafile=str(value))
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load certificates from {value}: {exc}") from exc
        return value

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client context for a private CA; None leaves the libraries' own default."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    @property
    def intake_enabled(self) -> bool:
        return bool(self.imap_host and self.imap_user)

    @property
    def delivery_enabled(self) -> bool:
        return bool(self.smtp_host and self.address)


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLACK_", **_COMMON)  # type: ignore[typeddict-item]

    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = Field(default="", description="xapp- token: use Socket Mode instead of HTTP")
    # A Socket Mode connection that stops answering pings is replaced within a few intervals: a link
    # that died without a close frame (a dropped NAT entry, a sleeping laptop) is noticed that fast.
    socket_ping_seconds: float = Field(default=10.0, gt=0, le=300)
    review_channel: str = ""
    escalation_channel: str = ""
    api_url: str = Field(default="", description="Web API base URL override, e.g. a test server")
    # Slack user ids allowed to approve, edit and reject.
    reviewers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    reviewer_group: str = Field(default="", description="a user group id whose members may approve")

    @field_validator("reviewers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)


class SLASettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLA_", **_COMMON)  # type: ignore[typeddict-item]

    timezone: str = "America/New_York"
    open_at: time = time(9, 0)
    close_at: time = time(17, 0)
    workdays: Annotated[list[int], NoDecode] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    business_days: int = 3
    holiday_subdiv: str = ""  # a US state adds its holidays to the federal ones
    closures: Annotated[list[date], NoDecode] = Field(default_factory=list)

    @field_validator("workdays", "closures", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
        return value

    @field_validator("workdays")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 <= day <= 6 for day in value):
            raise ValueError("give one or more weekdays from 0 (Monday) to 6 (Sunday)")
        return sorted(set(value))

    @field_validator("business_days")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @field_validator("open_at", "close_at")
    @classmethod
    def _local_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a local time like 09:00, without a zone (see SLA_TIMEZONE)")
        return value

    @field_validator("holiday_subdiv")
    @classmethod
    def _us_state(cls, value: str) -> str:
        import holidays

        value = value.strip().upper()
        if value and value not in holidays.country_holidays("US").subdivisions:
            raise ValueError(f"{value!r} is not a US state or territory code")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WEB_", **_COMMON)  # type: ignore[typeddict-item]

    host: str = "127.0.0.1"
    port: int = 8311
    base_url: str = Field(default="", description="public URL for links; empty: http://host:port")

    @property
    def public_url(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITY311_", **_COMMON)  # type: ignore[typeddict-item]

    data_dir: Path = Field(default_factory=_default_data_dir)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    worker_interval: float = 1.0
    # New cases one sender may open in an hour before the rest are held in triage.
    flood_per_sender_per_hour: int = 20
    # Minutes a message may keep failing (and being retried) before reviewers hear of it.
    delivery_delayed_minutes: float = Field(default=30.0, gt=0)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mail: MailSettings = Field(default_factory=MailSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    sla: SLASettings = Field(default_factory=SLASettings)
    web: WebSettings = Field(default_factory=WebSettings)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def database_url(self) -> str:
        """The async SQLAlchemy URL to use."""
        url = self.database.url
        if not url:
            return f"sqlite+aiosqlite:///{self.data_dir / 'city311.db'}"
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url[len("postgresql://"):]
        if url.startswith("postgresql+asyncpg://"):
            # Hosting platforms hand out libpq's sslmode; asyncpg calls it ssl.
            return url.replace("sslmode=", "ssl=")
        if url.startswith("sqlite://"):
            return "sqlite+aiosqlite://" + url[len("sqlite://"):]
        return url

    def check(self) -> None:
        """Cross-field checks: a channel that is half configured is a mistake, not a default."""
        if self.slack.bot_token and not (self.slack.signing_secret or self.slack.app_token):
            raise ConfigError("SLACK_SIGNING_SECRET", "required when SLACK_BOT_TOKEN is set")
        if self.slack.bot_token and not self.slack.review_channel:
            raise ConfigError("SLACK_REVIEW_CHANNEL", "required when SLACK_BOT_TOKEN is set")
        if self.mail.imap_host and not self.mail.imap_user:
            raise ConfigError("MAIL_IMAP_USER", "required when MAIL_IMAP_HOST is set")
        if (self.mail.imap_host or self.mail.smtp_host) and not self.mail.address:
            raise ConfigError("MAIL_ADDRESS", "required when mail is configured")
        mail = self.mail
        for protocol, security, host, user in (
                ("IMAP", mail.imap_security, mail.imap_host, mail.imap_user),
                ("SMTP", mail.smtp_security, mail.smtp_host, mail.smtp_user)):
            if (security == "plain" and host and user and not _loopback(host)
                    and not mail.allow_plaintext_login):
                raise ConfigError(f"MAIL_{protocol}_SECURITY", f"plain would send the {protocol} "
                                  "password unencrypted; use tls or starttls (or set "
                                  "MAIL_ALLOW_PLAINTEXT_LOGIN=true on a trusted network)")
        if self.sla.open_at >= self.sla.close_at:
            raise ConfigError("SLA_CLOSE_AT", "must be after SLA_OPEN_AT")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


_SECTIONS = {"database": "DATABASE_", "mail": "MAIL_", "slack": "SLACK_", "sla": "SLA_",
             "web": "WEB_"}


def _variable_of(section: str | None, error: dict[str, Any]) -> str:
    loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    prefix = _SECTIONS.get(section or "", "CITY311_")
    return prefix + (loc[0].upper() if loc else "?")


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment; raise ConfigError naming the variable."""
    sections: dict[str, Any] = {}
    classes: dict[str, type[BaseSettings]] = {
        "database": DatabaseSettings, "mail": MailSettings, "slack": SlackSettings,
        "sla": SLASettings, "web": WebSettings,
    }
    for name, cls in classes.items():
        if name in overrides:
            continue
        try:
            sections[name] = cls()
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(_variable_of(name, dict(first)), first["msg"]) from None
        except SettingsError as exc:
            raise ConfigError(_SECTIONS[name] + "*", str(exc)) from None
    try:
        settings = Settings(**sections, **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(_variable_of(None, dict(first)), first["msg"]) from None
    settings.check()
    return settings
