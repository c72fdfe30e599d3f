"""Errors of the tracing package.

    TracingError
    └── PhoenixError        Phoenix could not be installed, started or queried

Messages say what was expected, what came, and what to do.
"""

from __future__ import annotations

__all__ = ["PhoenixError", "TracingError"]


class TracingError(Exception):
    """Root of the tracing package's errors."""


class PhoenixError(TracingError):
    """Phoenix could not be installed, started, or answered a request badly."""
