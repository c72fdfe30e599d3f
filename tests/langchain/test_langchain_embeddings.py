"""``AgentflowEmbeddings`` over ``af.embed`` / ``af.aembed`` on the loopback server."""

from __future__ import annotations

from typing import Any

import agentflow as af
from agentflow.langchain import AgentflowEmbeddings
from agentflow.testing import LoopbackServer


def _embedding_calls(srv: LoopbackServer) -> list[Any]:
    return [r for r in srv.requests if r.path.endswith("/embeddings")]


def test_embed_documents_and_query_are_accounted(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    embeddings = AgentflowEmbeddings(tier="big")
    with af.run("lc-embed") as run:
        vectors = embeddings.embed_documents(["Paris", "Lima"])
        query = embeddings.embed_query("Paris")
    assert len(vectors) == 2
    assert len(vectors[0]) == srv.embedding_dim
    assert query == vectors[0]  # the loopback's vectors are a function of the text
    assert vectors[0] != vectors[1]
    calls = _embedding_calls(srv)
    assert [c.body["input"] for c in calls] == [["Paris", "Lima"], ["Paris"]]
    assert {c.body["model"] for c in calls} == {"big-model"}
    assert run.totals.calls == 2
    assert run.cost.total_usd > 0


async def test_aembed_documents_and_query(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    embeddings = AgentflowEmbeddings(tier="small", model_kwargs={"user": "u-7"})
    async with af.run("lc-aembed") as run:
        vectors = await embeddings.aembed_documents(["a", "b", "c"])
        query = await embeddings.aembed_query("b")
    assert [len(v) for v in vectors] == [srv.embedding_dim] * 3
    assert query == vectors[1]
    assert _embedding_calls(srv)[0].body["user"] == "u-7"
    assert run.totals.calls == 2


def test_no_texts_make_no_call(zoo: af.ModelZoo, srv: LoopbackServer) -> None:
    assert AgentflowEmbeddings().embed_documents([]) == []
    assert _embedding_calls(srv) == []
