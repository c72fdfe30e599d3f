"""LangChain and LangGraph on agentflow: every model call goes through the pipeline.

    from agentflow.langchain import AgentflowEmbeddings, ChatAgentflow

    model = ChatAgentflow(tier="workhorse")  # a LangChain BaseChatModel
    agent = create_react_agent(model, tools)  # LangGraph: tiers, budgets, cost spans
    node_policies({"agent": {"tier": "heavy"}})  # the "agent" node's step policy

Import it explicitly: ``import agentflow`` never imports LangChain.
"""

from agentflow.langchain._chat import ChatAgentflow
from agentflow.langchain._embeddings import AgentflowEmbeddings
from agentflow.langchain._nodes import node_policies

__all__ = ["AgentflowEmbeddings", "ChatAgentflow", "node_policies"]
