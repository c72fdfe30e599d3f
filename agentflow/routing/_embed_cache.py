"""``CachedEmbedder``: prompt vectors kept on disk, so re-evaluating is not re-embedding.

Embedding 14,000 MMLU prompts with ``af.LocalEmbedder`` takes minutes on a laptop CPU;
training and scoring a router on them takes seconds. ``CachedEmbedder(inner, directory)``
embeds each distinct text once and keeps the vectors in ``directory/<embedder>.npz``
(numpy, no pickle), keyed by the SHA-256 of the text, one file per embedder setting
(``LocalEmbedder``'s model and ``max_length``, ``HashingEmbedder``'s ``dim`` and
n-grams). Vectors are stored as int8 with one float32 scale per vector, a quarter of
float32: cosine similarities move by less than 1e-3. A router trained through it is saved
with the inner embedder's settings. ``agentflow route --embedding-cache DIR`` uses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agentflow._errors import ConfigError
from agentflow.routing._embed import Embedder, HashingEmbedder, embed_texts

__all__ = ["CachedEmbedder"]


def _settings(embedder: Embedder) -> dict[str, Any]:
    if isinstance(embedder, HashingEmbedder):
        return embedder.to_dict()
    to_dict = getattr(embedder, "router_dict", None)
    settings = to_dict() if callable(to_dict) else None
    if not isinstance(settings, dict):
        raise ConfigError(
            f"CachedEmbedder needs an embedder it can name in the cache file "
            f"(af.LocalEmbedder or HashingEmbedder), got {embedder!r}"
        )
    return settings


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


class CachedEmbedder:
    """``inner``'s vectors, each distinct text embedded once, kept in ``directory``.

    The file is read on the first call and rewritten (atomically) after a call that
    embedded new texts.
    """

    def __init__(self, inner: Embedder, directory: str | Path, *, batch: int = 256) -> None:
        self.inner = inner
        self.settings = _settings(inner)
        tag = json.dumps(self.settings, sort_keys=True)
        digest = hashlib.sha256(tag.encode()).hexdigest()[:12]
        name = f"{self.settings.get('kind', 'embedder')}-{digest}"
        self.path = Path(directory) / f"{name}.npz"
        self.batch = batch
        self._vectors: dict[bytes, np.ndarray] | None = None

    def router_dict(self) -> dict[str, Any]:
        """What a router file records: the inner embedder's settings."""
        return self.settings

    def _load(self) -> dict[bytes, np.ndarray]:
        if self._vectors is None:
            self._vectors = {}
            if self.path.exists():
                try:
                    with np.load(self.path, allow_pickle=False) as data:
                        keys, codes, scales = data["keys"], data["codes"], data["scales"]
                    vectors = codes.astype(np.float32) * scales[:, None]
                    self._vectors = dict(zip((bytes(k) for k in keys), vectors, strict=True))
                except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
                    # truncated, not a zip, missing arrays, or arrays of mismatched lengths
                    raise ConfigError(
                        f"{self.path} is not an embedding cache ({type(err).__name__}: "
                        f"{err}); delete it or point --embedding-cache at another directory"
                    ) from None
        return self._vectors

    def _save(self, vectors: dict[bytes, np.ndarray]) -> None:
        keys = sorted(vectors)
        stacked = np.stack([vectors[k] for k in keys]).astype(np.float32)
        scales = np.abs(stacked).max(axis=1) / 127.0
        scales[scales == 0] = 1.0
        codes = np.rint(stacked / scales[:, None]).astype(np.int8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(
                    f,
                    keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(-1, 16),
                    codes=codes,
                    scales=scales.astype(np.float32),
                )
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep the cache from other users
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        # what the next run will read: keep the same (quantised) vectors in memory
        for k, c, s in zip(keys, codes, scales, strict=True):
            vectors[k] = c.astype(np.float32) * np.float32(s)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._load()
        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in vectors))
        if missing:
            by_key = dict(zip(keys, texts, strict=True))
            for start in range(0, len(missing), self.batch):
                chunk = missing[start : start + self.batch]
                embedded = embed_texts(self.inner, [by_key[k] for k in chunk])
                vectors.update(zip(chunk, embedded.astype(np.float32), strict=True))
            self._save(vectors)
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vectors[k] for k in keys])

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, {str(self.path.parent)!r})"
