"""A prompt that overflows a model's context window: the engine's 400 is not fatal when
the tier has a fallback — the fallback tier answers at once, without trying the tier's
other replicas (they serve the same model) — and without one it fails at once, saying
what to do."""

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
