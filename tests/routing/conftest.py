"""The hand-made outcomes file as a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from _hand_made import hand_made_rows, write_jsonl


@pytest.fixture
def hand_made(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "outcomes.jsonl", hand_made_rows())
