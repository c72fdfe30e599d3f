"""``AgentflowEmbeddings``: LangChain's ``Embeddings`` over ``af.embed`` / ``af.aembed``."""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field

from agentflow._api import aembed, embed

__all__ = ["AgentflowEmbeddings"]


class AgentflowEmbeddings(BaseModel, Embeddings):
    """Embeddings through agentflow's tiers, pricing, budgets and spans.

    ``tier`` picks the zoo tier (None: the enclosing step's, else the zoo's default);
    ``model_kwargs`` are litellm's embedding arguments (``user``, ``dimensions``, ...).
    """

    model_config = ConfigDict(frozen=True)

    tier: str | None = None
    model_kwargs: dict[str, Any] = Field(default_factory=dict)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return embed(texts, tier=self.tier, **self.model_kwargs).vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        result = await aembed(texts, tier=self.tier, **self.model_kwargs)
        return result.vectors

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]
