"""Errors of the tracing package.

    TracingError
    ├── ContentConfigError  a span-content setting (AGENTFLOW_CAPTURE_CONTENT, ...) is
    │                       malformed; also a ValueError
    └── PhoenixError        Phoenix could not be installed, started or queried

Messages say what was expected, what came, and what to do.
"""

from __future__ import annotations

__all__ = ["ContentConfigError", "PhoenixError", "TracingError"]


class TracingError(Exception):
    """Root of the tracing package's errors."""


class ContentConfigError(TracingError, ValueError):
    """A span-content setting (an environment variable or a ``ContentConfig`` field) is
    malformed; raised when the setting is read, before any span needs it."""


class PhoenixError(TracingError):
    """Phoenix could not be installed, started, or answered a request badly."""
