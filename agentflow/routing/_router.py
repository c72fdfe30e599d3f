"""What a router is, what it reads of a request, and router files (JSON, never pickle)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from agentflow._errors import ConfigError, UnknownTierError

__all__ = [
    "FORMAT",
    "Router",
    "message_text",
    "read_router_file",
    "request_text",
    "write_router_file",
]

FORMAT = "agentflow-router"
VERSION = 1


@runtime_checkable
class Router(Protocol):
    """Picks the tier of a ``tier="auto"`` step for one request.

    ``tiers`` are the zoo's tier names, cheapest first; the answer must be one of them.
    """

    def choose(
        self, messages: Sequence[Mapping[str, Any]], *, kind: str, tiers: Sequence[str]
    ) -> str: ...


def message_text(message: Mapping[str, Any]) -> str:
    """A message's text: its string content, or the text parts of a content list."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p["text"]) for p in content if isinstance(p, Mapping) and "text" in p)
    return ""


def request_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """What learned routers and keyword rules read: the user messages' text."""
    return "\n".join(message_text(m) for m in messages if m.get("role") == "user")


def check_choice(choice: str, tiers: Sequence[str], where: str) -> str:
    if choice not in tiers:
        raise UnknownTierError(choice, tiers, where=where)
    return choice


def write_router_file(path: str | Path, data: Mapping[str, Any]) -> None:
    payload = {"format": FORMAT, "version": VERSION, **data}
    Path(path).write_text(json.dumps(payload, separators=(",", ":")) + "\n", encoding="utf-8")


def read_router_file(path: str | Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read router file {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path} is not JSON ({err.msg}); expected a router file") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(
            f'{path} is not an agentflow router file (no "format": "{FORMAT}"); write '
            "one with router.save(path) or `agentflow route train`"
        )
    if data.get("version") != VERSION:
        raise ConfigError(
            f"{path} is router format version {data.get('version')!r}; this agentflow reads "
            f"version {VERSION}"
        )
    return data
