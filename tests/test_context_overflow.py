"""A prompt that overflows a model's context window: the engine's 400 is not fatal when
the tier has a fallback — the fallback tier answers at once, without trying the tier's
other replicas (they serve the same model); without one the call moves up to the next
tier with room that the budget can pay for, and with none it fails at once, saying what
to do."""

from __future__ import annotations

import pytest

import agentflow as af
from agentflow.testing import Fault, LoopbackServer, Reply
from tests.conftest import BIG_PRICE, USER, _endpoint

LLAMA = "the request exceeds the available context size, try increasing it"
VLLM = (
    "This model's maximum context length is 2048 tokens. However, you requested 3000 "
    "tokens (2900 in the messages, 100 in the completion)."
)


def _chat_models(srv: LoopbackServer) -> list[str]:
    return [r.body["model"] for r in srv.requests if r.path.endswith("/chat/completions")]


@pytest.mark.parametrize("message", [LLAMA, VLLM])
def test_overflow_goes_to_the_fallback_tier(srv: LoopbackServer, message: str) -> None:
    srv.script(Fault.status(400, body=message), model="small-model")
    srv.script(Reply("from the big model"), model="big-model")
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier(
                    "small",
                    endpoints=[_endpoint(srv, "small-model"), _endpoint(srv, "small-model")],
                    fallback="big",
                ),
                af.Tier("big", endpoints=[_endpoint(srv, "big-model", pricing=BIG_PRICE)]),
            ]
        )
    )
    answer = af.complete(USER)
    assert answer.text == "from the big model"
    assert answer.tier == "big"
    assert _chat_models(srv) == ["small-model", "big-model"]  # not the second replica


def test_overflow_without_a_fallback_fails_at_once(srv: LoopbackServer) -> None:
    srv.default = Fault.status(400, body=VLLM)
    af.configure(
        zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[_endpoint(srv), _endpoint(srv)])])
    )
    with pytest.raises(af.CallError) as err:
        af.complete(USER)
    assert "does not fit the context window of tier 'small'" in str(err.value)
    assert "2048" in str(err.value)  # the engine's sizes
    assert len(_chat_models(srv)) == 1


def test_overflow_moves_up_to_the_next_tier_with_room(srv: LoopbackServer) -> None:
    """No fallback: a prompt too long for the small tier's declared window is never sent
    there; the call moves up to the next tier in the zoo's order, whose window fits."""
    srv.default = Reply("from the big model")
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier("small", endpoints=[_endpoint(srv, context_window=64)]),
                af.Tier("big", endpoints=[_endpoint(srv, "big-model", context_window=32_768)]),
            ]
        )
    )
    long = [{"role": "user", "content": "word " * 400}]
    answer = af.complete(long, max_tokens=16)
    assert answer.tier == "big"
    assert answer.text == "from the big model"
    assert _chat_models(srv) == ["big-model"]  # nothing was sent to the small tier


def test_overflow_does_not_move_up_past_the_budget(srv: LoopbackServer) -> None:
    """The next tier up costs more than the run can pay: a ContextWindowError, and
    nothing is sent anywhere."""
    from budgets import Budget

    srv.default = Reply("from the big model")
    af.configure(
        zoo=af.ModelZoo(
            tiers=[
                af.Tier("small", endpoints=[_endpoint(srv, context_window=64)]),
                af.Tier(
                    "big",
                    endpoints=[
                        _endpoint(srv, "big-model", context_window=32_768, pricing=BIG_PRICE)
                    ],
                ),
            ]
        )
    )
    long = [{"role": "user", "content": "word " * 400}]
    with af.run("tight", budget=Budget(max_usd="0.000001")), pytest.raises(af.ContextWindowError):
        af.complete(long, max_tokens=16)
    assert _chat_models(srv) == []
