"""Measure each token-counting method against the prompt_tokens a real llama-server reports.

    python tests/budgets/measure_token_error.py                 # starts SmolLM2-135M itself
    python tests/budgets/measure_token_error.py --api-base http://127.0.0.1:8081/v1

For every prompt in PROMPTS it sends the chat to ``/v1/chat/completions`` (max_tokens=1)
and compares ``usage.prompt_tokens`` with what each counter predicted. Prints a markdown
table (the one in docs/budgets.md). Not a test: the figures depend on the model.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from budgets import TokenCounter

Messages = list[dict[str, Any]]

CODE = '''def settle(self, res, usd, input_tokens, output_tokens):
    """Replace the hold by what the call actually used."""
    self._own(res)
    if not self.backend.settle(res.key, res.id, (usd, input_tokens, output_tokens)):
        raise self._closed(res)
'''
CONTEXT = (
    "Retrieved passage 1: The H100 SXM delivers up to 3,958 TFLOPS of FP8 compute with "
    "sparsity and 80 GB of HBM3 memory at 3.35 TB/s.\n"
    "Retrieved passage 2: Serving throughput depends on batch size; a continuous-batching "
    "engine such as vLLM keeps the GPU busy by admitting new sequences every step.\n"
    "Retrieved passage 3: Prefix caching reuses the KV cache of a shared prompt prefix, so "
    "a cached prompt token costs almost no prefill time."
)

PROMPTS: dict[str, Messages] = {
    "short question": [{"role": "user", "content": "What is the capital of Australia?"}],
    "system + user": [
        {"role": "system", "content": "You are a planning agent. Answer with a numbered plan."},
        {"role": "user", "content": "Plan a 3-step literature review on KV-cache reuse."},
    ],
    "multi-turn": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Name a prime number above 100."},
        {"role": "assistant", "content": "101 is prime."},
        {"role": "user", "content": "And the next one after that?"},
        {"role": "assistant", "content": "103."},
        {"role": "user", "content": "Is 105 prime? Explain briefly."},
    ],
    "code review": [
        {"role": "system", "content": "You review Python code. Point out bugs only."},
        {"role": "user", "content": f"Review this method:\n\n```python\n{CODE}```"},
    ],
    "json extraction": [
        {
            "role": "user",
            "content": 'Extract {"name": str, "date": "YYYY-MM-DD", "amount_usd": float} from: '
            '"Invoice from Acme Corp dated 3 March 2025 for $1,249.50, due in 30 days."',
        }
    ],
    "retrieval context": [
        {"role": "system", "content": "Answer only from the passages; cite them as [n]."},
        {"role": "user", "content": f"{CONTEXT}\n\nQuestion: why are cached tokens cheap?"},
    ],
    "french": [
        {
            "role": "user",
            "content": "Résume en une phrase : le budget d'une exécution est réservé avant "
            "chaque appel, puis réglé au coût réel une fois la réponse reçue.",
        }
    ],
    "german": [
        {
            "role": "user",
            "content": "Übersetze ins Englische: Die Kosten pro Million Ausgabetokens "
            "ergeben sich aus dem GPU-Stundenpreis und dem Durchsatz.",
        }
    ],
    "japanese": [{"role": "user", "content": "日本の首都はどこですか？一文で答えてください。"}],
    "csv numbers": [
        {
            "role": "user",
            "content": "Sum the cost column:\nstep,tier,tokens,cost_usd\nplan,workhorse,812,"
            "0.000412\nretrieve,specialist,2301,0.000093\nverify,heavy,455,0.004550\n"
            "answer,workhorse,1290,0.000655",
        }
    ],
    "urls and paths": [
        {
            "role": "user",
            "content": "Which of these is a config file? /etc/agentflow/agentflow.toml, "
            "~/.cache/agentflow/cache.db, http://127.0.0.1:8081/v1/chat/completions, "
            "s3://bucket/runs/2025-03-01/trace.jsonl",
        }
    ],
    "named few-shot": [
        {"role": "system", "content": "Translate jargon into plain English."},
        {"role": "user", "name": "example_user", "content": "Let's circle back offline."},
        {"role": "assistant", "name": "example_bot", "content": "Let's talk later."},
        {"role": "user", "content": "We need to boil the ocean on this deliverable."},
    ],
}


@contextlib.contextmanager
def _endpoint(api_base: str | None) -> Iterator[str]:
    if api_base:
        yield api_base
        return
    from agentflow.local import serve_local  # the measurement's own server, not budgets'

    with serve_local("smollm2", replicas=1, threads=2, parallel=1) as servers:
        yield servers[0].base_url


def measure(api_base: str) -> list[tuple[str, float, float, float, int]]:
    """Per method: (name, mean |error| %, max |error| %, mean signed error %, prompts)."""
    model = "openai/smollm2-135m"
    methods: dict[str, Callable[[Messages], int]] = {
        "remote:/tokenize (for_endpoint)": TokenCounter.for_endpoint(
            api_base, model
        ).count_messages,
        "tiktoken:cl100k_base (for_model)": TokenCounter.for_model(model).count_messages,
        "tiktoken:o200k_base": TokenCounter.for_model("gpt-4o").count_messages,
        "approx:chars/4": TokenCounter(model).count_messages,
    }
    errors: dict[str, list[float]] = {name: [] for name in methods}
    with httpx.Client(timeout=120) as client:
        for label, messages in PROMPTS.items():
            reply = client.post(
                f"{api_base}/chat/completions",
                json={"messages": messages, "max_tokens": 1, "temperature": 0},
            )
            reply.raise_for_status()
            actual = int(reply.json()["usage"]["prompt_tokens"])
            row = [f"{label}: {actual}"]
            for name, count in methods.items():
                predicted = count(messages)
                errors[name].append((predicted - actual) / actual * 100)
                row.append(f"{name.split()[0]}={predicted}")
            print("  ".join(row), file=sys.stderr)
    return [
        (
            name,
            statistics.fmean(abs(e) for e in errs),
            max(abs(e) for e in errs),
            statistics.fmean(errs),
            len(errs),
        )
        for name, errs in errors.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-base", help="an already running llama-server's /v1 URL")
    args = parser.parse_args()
    with _endpoint(args.api_base) as api_base:
        rows = measure(api_base)
    print("| method | mean abs. error | worst abs. error | mean signed error | prompts |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, mean_abs, worst, signed, n in rows:
        print(f"| `{name}` | {mean_abs:.1f} % | {worst:.1f} % | {signed:+.1f} % | {n} |")


if __name__ == "__main__":
    main()
