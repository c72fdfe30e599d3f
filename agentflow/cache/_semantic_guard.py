"""A guard on semantic cache hits: the false-hit shapes an embedding cannot see.

Sentence embeddings put "Is the store open on Sundays?" and "Is the store open on
Mondays?" close together; so are a question and its negation, two amounts, two units, two
people (GPTCache #694, semantic-router #2691). ``hit_conflict(question, cached)`` compares
the two texts' *facts* and names the first that differs, or returns None:

* ``numbers``: the numbers (``3``, ``3.5``, ``1,200``, ``two``) differ as sets;
* ``negation``: one says no/not/never/n't/without and the other does not;
* ``units``: different units of measure or currencies (km/miles, kg/lb, °C/°F, $/€, %);
* ``dates``: different weekdays, months or relative days (today/tomorrow/yesterday);
* ``entities``: a capitalised name in one text (not a sentence's first word) appears
  nowhere in the other.

Pure string work, no model: microseconds per hit. By default it checks numbers and
negation; ``checks="all"`` runs all five. Measured on MRPC with the real
embedder in ``benchmarks/bench_semantic_threshold.py`` (see docs/semantic-cache.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["DEFAULT_GUARD", "GUARD_CHECKS", "hit_conflict"]

GUARD_CHECKS = ("numbers", "negation", "units", "dates", "entities")
"""Every check ``hit_conflict`` knows."""
DEFAULT_GUARD = ("numbers", "negation")
"""The checks used by default: on MRPC they raise the hit rate at <= 1% wrong hits (8.1%
against 7.5% unguarded); units, dates and entities cost more true hits than they save on
that news text (entities reject 61% of its paraphrases), so they are opt-in."""

_WORD_NUMBERS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100",
    "thousand": "1000", "million": "1000000", "billion": "1000000000", "half": "0.5", "dozen": "12",
}  # fmt: skip
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_NEGATIONS = frozenset(
    [
        "no",
        "not",
        "never",
        "none",
        "nobody",
        "nothing",
        "nowhere",
        "neither",
        "nor",
        "without",
        "cannot",
        "cant",
        "dont",
        "doesnt",
        "didnt",
        "isnt",
        "arent",
        "wasnt",
        "werent",
        "wont",
        "wouldnt",
        "shouldnt",
        "couldnt",
        "hasnt",
        "havent",
        "hadnt",
    ]
)
_UNITS = {
    "km": "km", "kilometer": "km", "kilometre": "km", "kilometers": "km", "kilometres": "km",
    "mile": "mi", "miles": "mi", "mi": "mi", "m": "m", "meter": "m", "metre": "m",
    "meters": "m", "metres": "m", "ft": "ft", "foot": "ft", "feet": "ft", "inch": "in",
    "inches": "in", "cm": "cm", "mm": "mm", "kg": "kg", "kilogram": "kg", "kilograms": "kg",
    "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb", "g": "g", "gram": "g",
    "grams": "g", "oz": "oz", "ounce": "oz", "ounces": "oz", "celsius": "c", "fahrenheit": "f",
    "liter": "l", "litre": "l", "liters": "l", "litres": "l", "gallon": "gal",
    "gallons": "gal", "percent": "%", "dollar": "usd", "dollars": "usd", "usd": "usd",
    "euro": "eur", "euros": "eur", "eur": "eur", "yen": "jpy", "gbp": "gbp", "sterling": "gbp",
    "hour": "h", "hours": "h", "minute": "min", "minutes": "min", "second": "s",
    "seconds": "s", "day": "d", "days": "d", "week": "wk", "weeks": "wk", "month": "mo",
    "months": "mo", "year": "y", "years": "y", "gb": "gb", "mb": "mb", "tb": "tb",
}  # fmt: skip
_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "%": "%", "°c": "c", "°f": "f"}
_DATES = frozenset(
    [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
        "mondays",
        "tuesdays",
        "wednesdays",
        "thursdays",
        "fridays",
        "saturdays",
        "sundays",
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
        "today",
        "tomorrow",
        "yesterday",
        "tonight",
        "weekend",
        "weekday",
        "morning",
        "afternoon",
        "evening",
        "night",
    ]
)
_NOT_NAMES = frozenset(
    [
        "i",
        "a",
        "an",
        "the",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "please",
        "tell",
        "give",
        "show",
        "list",
        "explain",
        "write",
        "mr",
        "mrs",
        "ms",
        "dr",
    ]
)


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _numbers(text: str) -> set[str]:
    found = {m.group().replace(",", "").lstrip("+") for m in _NUMBER.finditer(text)}
    found |= {_WORD_NUMBERS[w.lower()] for w in _words(text) if w.lower() in _WORD_NUMBERS}
    return {str(float(n)) if n.replace(".", "", 1).lstrip("-").isdigit() else n for n in found}


def _negated(text: str) -> bool:
    words = {w.lower().replace("'", "").replace("’", "") for w in _words(text)}
    return bool(words & _NEGATIONS) or "n't" in text.lower() or "n’t" in text.lower()


def _units(text: str) -> set[str]:
    lowered = text.lower()
    found = {_UNITS[w.lower()] for w in _words(text) if w.lower() in _UNITS}
    found |= {unit for symbol, unit in _SYMBOLS.items() if symbol in lowered}
    return found - {"m", "g", "s", "d"} if len(found) > 1 else found


def _dates(text: str) -> set[str]:
    return {w.lower().rstrip("s") for w in _words(text) if w.lower() in _DATES}


def _names(text: str) -> set[str]:
    names: set[str] = set()
    for sentence in re.split(r"[.!?;:]\s+|\n", text):
        words = _words(sentence)
        for i, word in enumerate(words):
            if i and word[0].isupper() and word.lower() not in _NOT_NAMES:
                names.add(word.lower())
    return names


def hit_conflict(question: str, cached: str, checks: Sequence[str] | str = "default") -> str | None:
    """The first of ``checks`` on which ``question`` and the ``cached`` question differ
    (``"numbers"``, ``"negation"``, ``"units"``, ``"dates"``, ``"entities"``), or None
    when none does and the semantic hit may be served. ``checks``: those names, or
    ``"default"`` (numbers and negation) or ``"all"``."""
    if checks == "default":
        checks = DEFAULT_GUARD
    elif checks == "all":
        checks = GUARD_CHECKS
    elif isinstance(checks, str):
        raise ValueError(f"checks={checks!r}: use 'default', 'all' or a list of check names")
    for check in checks:
        if check == "numbers" and _numbers(question) != _numbers(cached):
            return check
        if check == "negation" and _negated(question) != _negated(cached):
            return check
        if check == "units" and _units(question) != _units(cached):
            return check
        if check == "dates" and _dates(question) != _dates(cached):
            return check
        if check == "entities":
            a, b = _names(question), _names(cached)
            words_a = {w.lower() for w in _words(question)}
            words_b = {w.lower() for w in _words(cached)}
            if (a - words_b) or (b - words_a):
                return check
        if check not in GUARD_CHECKS:
            raise ValueError(f"unknown guard check {check!r}; use some of {GUARD_CHECKS}")
    return None
