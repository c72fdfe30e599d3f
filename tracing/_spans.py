"""Small helpers for code that emits spans through the OpenTelemetry API."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from tracing._conventions import ERROR_TYPE
from tracing._redact import redact

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["record_error"]


def record_error(span: Span, error: BaseException) -> None:
    """Mark ``span`` failed by ``error``: ERROR status, ``error.type`` and an
    ``exception`` event, with every message and the stack trace redacted of secrets.

    Use it instead of ``span.record_exception`` where an exception message may quote a
    credential (provider errors often echo the key they refused).
    """
    from opentelemetry.trace import Status, StatusCode

    error_type = type(error).__qualname__
    message = redact(str(error))
    stack = redact("".join(traceback.format_exception(error)))
    span.set_attribute(ERROR_TYPE, error_type)
    span.add_event(
        "exception",
        {
            "exception.type": error_type,
            "exception.message": message,
            "exception.stacktrace": stack,
        },
    )
    span.set_status(Status(StatusCode.ERROR, f"{error_type}: {message}"))
