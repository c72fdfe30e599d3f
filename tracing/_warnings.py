"""Warnings of the tracing package (no SDK import)."""

from __future__ import annotations

__all__ = ["UnsentSpansWarning"]


class UnsentSpansWarning(RuntimeWarning):
    """Finished spans did not reach an exporter's destination (a collector that hung,
    kept failing, or did not answer before shutdown's deadline). They were written to
    the spill file the message names, never dropped silently."""
