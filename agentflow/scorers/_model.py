"""Scorers that ask a model: ``judge`` (a grader on a chosen tier) and ``agreement``
(extra samples at the answer's tier).

Their calls go through ``af.complete`` / ``af.acomplete`` with an explicit tier. While a
scorer runs, the pipeline turns off the step's escalation, cache and auto-routing for
them (a judge never escalates itself), and still pays for, traces and records them.
"""

from __future__ import annotations

import asyncio
import re
import string
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from agentflow._errors import AgentflowError, ConfigError
from agentflow._scoring import Messages, Scorer

if TYPE_CHECKING:
    from agentflow._completion import Completion

__all__ = [
    "DEFAULT_JUDGE_PROMPT",
    "NORMALIZERS",
    "AgreementScorer",
    "JudgeScorer",
    "agreement",
    "judge",
    "parse_grade",
]

JUDGE_SYSTEM = (
    "You grade answers to questions. Reply with one integer from 0 to 10 and nothing "
    "else: 10 means correct and complete, 0 means wrong."
)
DEFAULT_JUDGE_PROMPT = "Question:\n{question}\n\nAnswer:\n{answer}\n\nGrade (0-10):"

_NUMBER = r"(\d+(?:\.\d+)?)"
_FRACTION = re.compile(_NUMBER + r"\s*(?:/|out\s+of)\s*" + _NUMBER)
_PERCENT = re.compile(_NUMBER + r"\s*%")
_LEADING_NUMBER = re.compile(r"^\W*" + _NUMBER + r"(?![\d/])")
_ANY_NUMBER = re.compile(r"(?<![\w.])" + _NUMBER + r"(?![\w/%])")
_WORD = re.compile(r"[a-z]+")
_YES = frozenset({"yes", "correct", "true", "right", "good", "pass"})
_NO = frozenset({"no", "incorrect", "wrong", "false", "bad", "fail", "not"})


def _verdict(words: Sequence[str]) -> float | None:
    for i, word in enumerate(words):
        if word == "not" and i + 1 < len(words) and words[i + 1] in _YES:
            return 0.0  # "not correct"
        if word in _YES:
            return 1.0
        if word in _NO and word != "not":
            return 0.0
    return None


def parse_grade(text: str, scale: float = 10) -> float | None:
    """A judge's reply as a confidence in [0, 1], or None when it holds no grade.

    Understood, first match wins: a fraction ("8/10", "4 out of 5"), a percentage
    ("85%"), a number at the start ("8", "7.5 - mostly right") out of ``scale``, a
    yes/no word at the start ("Yes", "Incorrect."), then the same anywhere in the text.
    """
    t = (text or "").strip().lower()
    if not t:
        return None
    match = _FRACTION.search(t)
    if match:
        num, den = float(match[1]), float(match[2])
        if den > 0 and 0 <= num <= den:
            return num / den
    match = _PERCENT.search(t)
    if match and 0 <= float(match[1]) <= 100:
        return float(match[1]) / 100
    words = _WORD.findall(t)
    match = _LEADING_NUMBER.match(t)
    if match and 0 <= float(match[1]) <= scale:
        return float(match[1]) / scale
    if words and (words[0] in _YES or words[0] in _NO):
        return _verdict(words[:2])
    for number in _ANY_NUMBER.findall(t):
        if 0 <= float(number) <= scale:
            return float(number) / scale
    return _verdict(words)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and "text" in p
        )
    return "" if content is None else str(content)


def _question(messages: Messages | None) -> str:
    for message in reversed(messages or ()):
        if message.get("role") == "user":
            return _text(message.get("content"))
    return "(the question is not available)"


def _require_messages(messages: Messages | None, who: str) -> Messages:
    if not messages:
        raise AgentflowError(
            f"{who} needs the request's messages to re-ask the question; call it through "
            "a step's Escalate (the pipeline passes them) or as scorer(completion, messages)"
        )
    return messages


class JudgeScorer(Scorer):
    """Asks a model on ``tier`` to grade the answer; its grade is the confidence."""

    def __init__(
        self,
        tier: str,
        prompt: str | None = None,
        *,
        system: str | None = None,
        scale: float = 10,
        max_tokens: int = 16,
        temperature: float = 0.0,
        parse: Callable[[str], float | bool | None] | None = None,
    ) -> None:
        if not isinstance(tier, str) or not tier:
            raise ConfigError(f"judge(tier=...) needs the name of a zoo tier, got {tier!r}")
        if prompt is not None:
            _check_template(prompt)
        if scale <= 0:
            raise ConfigError(f"judge(scale={scale}) must be positive (10 for a 0-10 grade)")
        if max_tokens < 1:
            raise ConfigError(f"judge(max_tokens={max_tokens}) must be at least 1")
        if temperature < 0:
            raise ConfigError(f"judge(temperature={temperature}) must be >= 0")
        if parse is not None and not callable(parse):
            raise ConfigError("judge(parse=...) takes a function str -> float | bool | None")
        self.tier = tier
        self.prompt = prompt if prompt is not None else DEFAULT_JUDGE_PROMPT
        # a custom prompt states its own scale and format, so no default system prompt
        self.system = system if system is not None else (JUDGE_SYSTEM if prompt is None else None)
        self.scale = scale
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.parse = parse

    def tiers(self) -> tuple[str, ...]:
        return (self.tier,)

    def messages_for(
        self, completion: Completion, messages: Messages | None
    ) -> list[dict[str, Any]]:
        """What the judge is asked: the last user message and the answer."""
        user = self.prompt.format(question=_question(messages), answer=completion.text)
        out = [{"role": "system", "content": self.system}] if self.system else []
        return [*out, {"role": "user", "content": user}]

    def _grade(self, reply: str) -> float | bool | None:
        if self.parse is not None:
            return self.parse(reply)
        return parse_grade(reply, self.scale)

    def score(self, completion: Completion, messages: Messages | None) -> float | bool | None:
        import agentflow as af

        reply = af.complete(
            messages=self.messages_for(completion, messages),
            tier=self.tier,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        return self._grade(reply.text)

    async def ascore(
        self, completion: Completion, messages: Messages | None
    ) -> float | bool | None:
        import agentflow as af

        reply = await af.acomplete(
            messages=self.messages_for(completion, messages),
            tier=self.tier,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        return self._grade(reply.text)

    def __repr__(self) -> str:
        return f"judge(tier={self.tier!r})"


def _check_template(prompt: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None}
    except ValueError as err:
        raise ConfigError(f"judge(prompt=...) is not a valid format string: {err}") from None
    unknown = fields - {"question", "answer"}
    if unknown or "answer" not in fields:
        raise ConfigError(
            "judge(prompt=...) is a template with {answer} and optionally {question} "
            f"(double other braces: {{{{ }}}}); got fields {sorted(fields)}"
        )


def _normalize_text(text: str) -> str:
    t = " ".join(text.casefold().split())
    return t.strip(" .!?;:,'\"`*")


_LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _normalize_number(text: str) -> str:
    numbers = _LAST_NUMBER.findall(text.replace(",", ""))
    if not numbers:
        return _normalize_text(text)
    value = float(numbers[-1])
    return str(int(value)) if value.is_integer() else repr(value)


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "text": _normalize_text,
    "number": _normalize_number,
    "exact": lambda text: text,
}


class AgreementScorer(Scorer):
    """Samples the question ``n - 1`` more times at the answer's tier; the confidence is
    the share of all ``n`` answers that agree with the one being scored."""

    def __init__(
        self,
        n: int = 3,
        temperature: float = 0.7,
        normalize: str | Callable[[str], str] = "text",
        max_tokens: int | None = None,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError(f"agreement(n={n!r}) needs n >= 2: the answer and n-1 samples")
        if temperature <= 0:
            raise ConfigError(
                f"agreement(temperature={temperature}) must be above 0: at temperature 0 "
                "every sample repeats the answer"
            )
        if isinstance(normalize, str):
            if normalize not in NORMALIZERS:
                raise ConfigError(
                    f"agreement(normalize={normalize!r}) is unknown; use "
                    f"{', '.join(map(repr, NORMALIZERS))} or a function str -> str"
                )
            self.normalizer = NORMALIZERS[normalize]
        elif callable(normalize):
            self.normalizer = normalize
        else:
            raise ConfigError(
                f"agreement(normalize=...) takes a name or a function, got {normalize!r}"
            )
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"agreement(max_tokens={max_tokens}) must be at least 1")
        self.n = n
        self.temperature = temperature
        self.normalize = normalize
        self.max_tokens = max_tokens

    def _params(self, completion: Completion) -> dict[str, Any]:
        # room for an answer a little longer than the one being scored
        limit = self.max_tokens or 2 * completion.usage.completion_tokens + 16
        return {"tier": completion.tier, "temperature": self.temperature, "max_tokens": limit}

    def agreement(self, answer: str, samples: Sequence[str]) -> float:
        """The share of ``[answer, *samples]`` equal to ``answer`` once normalised."""
        target = self.normalizer(answer)
        same = 1 + sum(self.normalizer(s) == target for s in samples)
        return same / (1 + len(samples))

    def score(self, completion: Completion, messages: Messages | None) -> float:
        import agentflow as af

        request = [dict(m) for m in _require_messages(messages, "agreement()")]
        params = self._params(completion)
        samples = [af.complete(messages=request, **params).text for _ in range(self.n - 1)]
        return self.agreement(completion.text, samples)

    async def ascore(self, completion: Completion, messages: Messages | None) -> float:
        import agentflow as af

        request = [dict(m) for m in _require_messages(messages, "agreement()")]
        params = self._params(completion)
        replies = await asyncio.gather(
            *(af.acomplete(messages=request, **params) for _ in range(self.n - 1))
        )
        return self.agreement(completion.text, [r.text for r in replies])

    def __repr__(self) -> str:
        return f"agreement(n={self.n}, temperature={self.temperature})"


def judge(
    tier: str,
    prompt: str | None = None,
    *,
    system: str | None = None,
    scale: float = 10,
    max_tokens: int = 16,
    temperature: float = 0.0,
    parse: Callable[[str], float | bool | None] | None = None,
) -> JudgeScorer:
    """A model on ``tier`` grades the answer.

    The default prompt shows the request's last user message and the answer and asks
    for a grade from 0 to 10; ``prompt`` replaces it (a template with ``{answer}`` and
    optionally ``{question}``). The reply is read by ``parse_grade`` (fractions,
    percentages, numbers out of ``scale``, yes/no) or by ``parse``; a reply with no
    grade in it gives None, which counts as unconfident.
    """
    return JudgeScorer(
        tier,
        prompt,
        system=system,
        scale=scale,
        max_tokens=max_tokens,
        temperature=temperature,
        parse=parse,
    )


def agreement(
    n: int = 3,
    temperature: float = 0.7,
    normalize: str | Callable[[str], str] = "text",
    *,
    max_tokens: int | None = None,
) -> AgreementScorer:
    """Self-consistency: ask the same question ``n - 1`` more times at the answer's tier
    (at ``temperature``) and score the share of the ``n`` answers that agree with it.

    ``normalize`` decides when two answers agree: ``"text"`` (case, spacing and trailing
    punctuation ignored), ``"number"`` (the last number in the text), ``"exact"``, or a
    function ``str -> str``. The extra samples are paid for: ``n=3`` triples the cost of
    an answer at that tier.
    """
    return AgreementScorer(n, temperature, normalize, max_tokens)
