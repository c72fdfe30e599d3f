"""Confidence scorers for ``af.Escalate(scorer=...)``.

    import agentflow as af
    from agentflow import scorers

    @af.step(tier="small", escalate=af.Escalate(
        min_confidence=0.7,
        scorer=scorers.all_of(scorers.schema(Answer), scorers.judge(tier="heavy")),
    ))
    def answer(question: str) -> af.Completion: ...

A scorer gives a confidence in [0, 1], or None when it cannot tell (treated as
unconfident). Plain functions of the ``Completion`` and the strings ``"logprob"`` /
``"logprob_min"`` work as scorers too.
"""

from agentflow._scoring import (
    FunctionScorer,
    LogprobScorer,
    MissingLogprobsWarning,
    Scorer,
    as_scorer,
)
from agentflow.scorers._basic import SchemaScorer, logprob, logprob_min, schema, verifier
from agentflow.scorers._combine import (
    AllOf,
    AnyOf,
    Combination,
    Weighted,
    all_of,
    any_of,
    weighted,
)
from agentflow.scorers._model import (
    AgreementScorer,
    JudgeScorer,
    agreement,
    judge,
    parse_grade,
)

__all__ = [
    "AgreementScorer",
    "AllOf",
    "AnyOf",
    "Combination",
    "FunctionScorer",
    "JudgeScorer",
    "LogprobScorer",
    "MissingLogprobsWarning",
    "SchemaScorer",
    "Scorer",
    "Weighted",
    "agreement",
    "all_of",
    "any_of",
    "as_scorer",
    "judge",
    "logprob",
    "logprob_min",
    "parse_grade",
    "schema",
    "verifier",
    "weighted",
]
