"""``hit_conflict``: the false-hit shapes a semantic hit is checked for."""

from __future__ import annotations

import pytest

from agentflow.cache import hit_conflict

DEFAULT_GUARD = "default"
ALL = "all"


@pytest.mark.parametrize(
    ("question", "cached", "checks", "conflict"),
    [
        ("Convert 10 miles to km", "Convert 12 miles to km", DEFAULT_GUARD, "numbers"),
        ("Book a table for two", "Book a table for 3", DEFAULT_GUARD, "numbers"),
        ("Is 1,200 enough?", "Is 1200 enough?", DEFAULT_GUARD, None),
        ("Can I pay by card?", "Can't I pay by card?", DEFAULT_GUARD, "negation"),
        ("Is the shop open?", "Is the shop not open?", DEFAULT_GUARD, "negation"),
        ("How do I reset my password?", "How can I reset my password?", DEFAULT_GUARD, None),
        ("How much is 5 kg in pounds?", "How much is 5 kg in ounces?", ALL, "units"),
        ("Price in $?", "Price in €?", ALL, "units"),
        ("Is the store open on Sundays?", "Is the store open on Mondays?", ALL, "dates"),
        ("Is the store open on Sundays?", "Is the store open on Mondays?", DEFAULT_GUARD, None),
        ("What is the capital of France?", "What is the capital of Germany?", ALL, "entities"),
        ("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by whom?", ALL, None),
    ],
)
def test_conflicts(question: str, cached: str, checks: str, conflict: str | None) -> None:
    assert hit_conflict(question, cached, checks) == conflict
    assert hit_conflict(cached, question, checks) == conflict  # symmetric


def test_checks_by_name_and_unknown_ones_refused() -> None:
    assert hit_conflict("open on Sunday", "open on Monday", ["dates"]) == "dates"
    assert hit_conflict("open on Sunday", "open on Monday", ["numbers"]) is None
    with pytest.raises(ValueError, match="unknown guard check"):
        hit_conflict("a", "a", ("colour",))
    with pytest.raises(ValueError, match="'default', 'all'"):
        hit_conflict("a", "a", "some")
