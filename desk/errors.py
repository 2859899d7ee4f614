"""One exception hierarchy for the whole service.

    DeskError
     ├── ConfigError            a setting is missing or broken (names the variable)
     ├── InputError             bad input from a person or a file; the sender can fix it
     ├── NotFoundError          a case, city, contact or follow-up that does not exist
     ├── WorkflowError          an illegal case transition
     │    └── AlreadyDoneError  a compare-and-set lost: someone else did it first
     ├── PermissionDeniedError  a user may not do this (not a reviewer)
     └── DeliveryError          sending failed
          ├── TransientDeliveryError  try again later (connection refused, 4xx, 429, 5xx)
          └── PermanentDeliveryError  never retry (5xx SMTP reply, invalid channel)

Vendor errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

__all__ = [
    "AlreadyDoneError",
    "ConfigError",
    "DeliveryError",
    "DeskError",
    "InputError",
    "NotFoundError",
    "PermanentDeliveryError",
    "PermissionDeniedError",
    "TransientDeliveryError",
    "WorkflowError",
]


class DeskError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(DeskError):
    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class InputError(DeskError, ValueError):
    """Bad input that the person who sent it can fix."""


def check_unicode(text: str, what: str) -> str:
    """``text``, if it can be written as UTF-8; else an InputError naming ``what``. A lone
    surrogate comes from a JSON escape (``"\\ud800"``) or a command-line argument that was not
    UTF-8, and nothing downstream (the tokenizer, the database, a reply) can take it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} is not valid Unicode (a lone surrogate at character "
                         f"{exc.start})") from exc
    return text


class NotFoundError(DeskError, LookupError):
    pass


class WorkflowError(DeskError):
    def __init__(self, message: str, *, case_ref: str | None = None) -> None:
        super().__init__(message)
        self.case_ref = case_ref


class AlreadyDoneError(WorkflowError):
    """A compare-and-set lost the race: the case had already moved on."""


class PermissionDeniedError(DeskError, PermissionError):
    pass


class DeliveryError(DeskError):
    def __init__(
        self, message: str, *, channel: str | None = None, code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.channel = channel
        self.code = code
        self.retry_after = retry_after


class TransientDeliveryError(DeliveryError, ConnectionError):
    pass


class PermanentDeliveryError(DeliveryError):
    pass
