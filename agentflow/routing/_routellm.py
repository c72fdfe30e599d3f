"""RouteLLM's public per-query outcome CSVs (``routellm/evals/*``), read as ``Outcomes``.

A RouteLLM CSV has one row per prompt and one True/False column per model::

    prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview,<model>_response,...

``read_routellm_csv`` reads any number of them (paths or globs: the 57 MMLU domains are 57
files), matches model columns across files and across renames (``mixtral-8x7b-instruct-
v0.1`` finds ``mistralai/Mixtral-8x7B-Instruct-v0.1``: the same name, case-insensitively,
with or without the organisation), drops the prompts of a contamination list (RouteLLM's
``contaminated_prompts.jsonl``) and prices each call: per call (``costs``) or per million
tokens (``prices``) with the prompt's tokens and, when the file has the model's
``<model>_response`` column, the answer's tokens, counted offline.
"""

from __future__ import annotations

import csv
import glob
import gzip
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from agentflow.routing._outcomes import Outcomes, OutcomesError
from budgets import TokenPricing

__all__ = [
    "DEFAULT_PRICES",
    "expand_paths",
    "read_contamination",
    "read_routellm_csv",
]

DEFAULT_PRICES: dict[str, TokenPricing] = {
    "gpt-4-1106-preview": TokenPricing(input_per_mtok="24.7", output_per_mtok="24.7"),
    "mistralai/Mixtral-8x7B-Instruct-v0.1": TokenPricing(
        input_per_mtok="0.24", output_per_mtok="0.24"
    ),
}
"""USD per million tokens (input and output alike), as the RouteLLM paper priced its pair:
GPT-4 Turbo at $24.7 and Mixtral 8x7B at $0.24, blended."""

_TRUE = frozenset({"true", "1", "yes", "1.0"})
_FALSE = frozenset({"false", "0", "no", "0.0"})
_COUNT_WITH = "gpt-4-1106-preview"  # tiktoken's cl100k_base, offline


def _key(name: str) -> str:
    """What two spellings of one model share: the name after the organisation, folded."""
    return name.rpartition("/")[2].casefold()


def _lookup(table: Mapping[str, object], model: str) -> str | None:
    """The key of ``table`` that names ``model`` (exactly, else by ``_key``)."""
    if model in table:
        return model
    return next((k for k in table if _key(k) == _key(model)), None)


def expand_paths(patterns: str | Path | Iterable[str | Path]) -> list[Path]:
    """Paths and glob patterns (``mmlu_*.csv``, ``**``) as a sorted, de-duplicated list of
    files; OutcomesError when a pattern matches nothing."""
    items = [patterns] if isinstance(patterns, str | Path) else list(patterns)
    if not items:
        raise OutcomesError("no CSV given; pass one or more paths or glob patterns")
    found: list[Path] = []
    for item in items:
        text = str(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                raise OutcomesError(f"the pattern {text!r} matches no file")
            found += [Path(m) for m in matches]
        else:
            found.append(Path(text))
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(str(path.resolve()), path)
    return list(unique.values())


def read_contamination(paths: str | Path | Iterable[str | Path]) -> set[str]:
    """Prompts to leave out: RouteLLM's ``contaminated_prompts.jsonl`` (rows with
    ``eval_prompt``), JSONL rows with ``prompt``, or a JSON list of strings."""
    prompts: set[str] = set()
    for path in expand_paths(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise OutcomesError(f"cannot read the contamination list {path}: {err}") from err
        stripped = text.lstrip()
        if stripped.startswith("["):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as err:
                raise OutcomesError(f"{path}: not JSON ({err.msg})") from None
            if not all(isinstance(p, str) for p in data):
                raise OutcomesError(f"{path}: a JSON list of contaminated prompts holds strings")
            prompts.update(data)
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise OutcomesError(f"{path}:{number}: not JSON ({err.msg})") from None
            prompt = row.get("eval_prompt", row.get("prompt")) if isinstance(row, dict) else None
            if not isinstance(prompt, str):
                raise OutcomesError(
                    f"{path}:{number}: expected a JSON object with 'eval_prompt' (RouteLLM's "
                    "contaminated_prompts.jsonl) or 'prompt', got {line[:80]!r}"
                )
            prompts.add(prompt)
    return prompts


def _open_text(path: Path) -> TextIO:
    """``path`` opened for reading text, through gzip when it ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return path.open(newline="", encoding="utf-8")


def _read_one(
    path: Path, models: Sequence[str] | None
) -> tuple[list[str], list[str], list[list[bool]], dict[str, list[str]]]:
    """(model columns as spelled here, prompts, flags per row, responses per model)."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long answers in *_response cells
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise OutcomesError(f"{path} is empty; expected a header prompt,<model>,...")
            if "prompt" not in header:
                raise OutcomesError(
                    f"{path}: the header {header} has no 'prompt' column; a RouteLLM CSV "
                    "looks like prompt,<weak model>,<strong model>"
                )
            columns = [h for h in header if h and h != "prompt" and not h.endswith("_response")]
            if models:
                chosen = []
                for m in models:
                    hit = _lookup(dict.fromkeys(columns), m)
                    if hit is None:
                        raise OutcomesError(
                            f"{path}: no column for model {m!r} in the header {header} "
                            "(names match case-insensitively, with or without the "
                            "organisation, e.g. mixtral-8x7b-instruct-v0.1)"
                        )
                    chosen.append(hit)
            else:
                chosen = columns
            if not chosen:
                raise OutcomesError(f"{path}: no model column in the header {header}")
            p_col, cols = header.index("prompt"), [header.index(m) for m in chosen]
            answers = {
                m: header.index(f"{m}_response") for m in chosen if f"{m}_response" in header
            }
            prompts: list[str] = []
            rows: list[list[bool]] = []
            responses: dict[str, list[str]] = {m: [] for m in answers}
            for record in reader:
                if not record:
                    continue
                where = f"{path}:{reader.line_num}"
                if len(record) != len(header):
                    raise OutcomesError(
                        f"{where}: {len(record)} fields, the header has {len(header)}"
                    )
                flags = []
                for model, col in zip(chosen, cols, strict=True):
                    cell = record[col].strip().lower()
                    if cell not in _TRUE and cell not in _FALSE:
                        raise OutcomesError(
                            f"{where}: column {model!r} is {record[col]!r}; expected "
                            "True/False or 1/0"
                        )
                    flags.append(cell in _TRUE)
                prompts.append(record[p_col])
                rows.append(flags)
                for m, col in answers.items():
                    responses[m].append(record[col])
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as err:
        raise OutcomesError(f"cannot read {path}: {err}") from err
    if not rows:
        raise OutcomesError(f"{path} has a header but no rows")
    return chosen, prompts, rows, responses


def read_routellm_csv(
    paths: str | Path | Iterable[str | Path],
    costs: Mapping[str, float] | None = None,
    *,
    prices: Mapping[str, TokenPricing] | None = None,
    models: Sequence[str] | None = None,
    contaminated: str | Path | Iterable[str | Path] | set[str] | None = None,
    output_tokens: int | None = None,
) -> Outcomes:
    """Read one or more RouteLLM evaluation CSVs (paths or glob patterns; ``.csv.gz``
    files are read gzip-compressed) as one set.

    ``models`` picks the model columns and names the tiers after them (default: every
    column but ``prompt`` and ``*_response``, named as in the first file); every file
    must have them. ``costs`` gives a model's USD per call;
    ``prices`` its ``TokenPricing`` per million tokens, applied to each prompt's tokens
    and its answer's (from the ``<model>_response`` column, else ``output_tokens`` per
    call, else none: the note says so). Models with neither default to
    ``DEFAULT_PRICES``. ``contaminated``: a list of prompts (or files of them, see
    ``read_contamination``) to leave out. A CSV has no confidence, so there is no cascade.
    """
    files = expand_paths(paths)
    names: list[str] = []
    prompts: list[str] = []
    flags: list[list[bool]] = []
    responses: dict[str, list[str | None]] = {}
    for path in files:
        chosen, p, rows, answers = _read_one(path, models or names or None)
        if not names:
            names = chosen
            responses = {m: [] for m in names}
        elif [_key(c) for c in chosen] != [_key(n) for n in names]:
            raise OutcomesError(
                f"{path} has model columns {chosen}, the first file {names}; read files of "
                "one model pair together, or pick the models with --tiers"
            )
        prompts += p
        flags += rows
        for name, spelled in zip(names, chosen, strict=True):
            got = answers.get(spelled)
            responses[name] += got if got is not None else [None] * len(p)
    if models:
        names = list(models)  # the caller's spelling, whatever the files call them
    notes: list[str] = []
    if len(files) > 1:
        notes.append(f"read {len(files)} files, {len(prompts)} prompts")
    keep = np.ones(len(prompts), dtype=bool)
    if contaminated is not None:
        drop = contaminated if isinstance(contaminated, set) else read_contamination(contaminated)
        keep = np.array([p not in drop for p in prompts], dtype=bool)
        notes.append(f"contamination list: left out {int((~keep).sum())} of {len(prompts)} prompts")
        if not keep.any():
            raise OutcomesError("the contamination list leaves no prompt to evaluate")
    rows_kept = np.flatnonzero(keep)
    kept_prompts = [prompts[i] for i in rows_kept]
    correct = np.asarray(flags, dtype=bool)[rows_kept]
    cost, note = _costs(names, kept_prompts, responses, rows_kept, costs, prices, output_tokens)
    notes += note
    order = sorted(range(len(names)), key=lambda j: (float(cost[:, j].mean()), j))
    return Outcomes(
        tuple(kept_prompts),
        tuple(names[j] for j in order),
        correct[:, order],
        cost[:, order],
        np.full(correct.shape, np.nan),
        ", ".join(str(f) for f in files)
        if len(files) < 4
        else f"{files[0]} and {len(files) - 1} more",
        tuple(notes),
    )


def _costs(
    names: list[str],
    prompts: list[str],
    responses: Mapping[str, list[str | None]],
    rows: np.ndarray,
    costs: Mapping[str, float] | None,
    prices: Mapping[str, TokenPricing] | None,
    output_tokens: int | None,
) -> tuple[np.ndarray, list[str]]:
    """USD per call, shape (prompts, models), and notes on how it was priced."""
    per_call, per_token = dict(costs or {}), dict(prices or {})
    cost = np.zeros((len(prompts), len(names)))
    notes: list[str] = []
    counter = None
    prompt_tokens: np.ndarray | None = None
    for j, name in enumerate(names):
        call_key = _lookup(per_call, name)
        if call_key is not None:
            usd = float(per_call[call_key])
            if not math.isfinite(usd) or usd < 0:
                raise OutcomesError(f"the cost per call of {name} must be >= 0, got {usd!r}")
            cost[:, j] = usd
            notes.append(f"{name}: ${usd:.4g} per call")
            continue
        token_key = _lookup(per_token, name) or _lookup(DEFAULT_PRICES, name)
        if token_key is None:
            raise OutcomesError(
                f"no price for model {name!r}: give a cost per call (--cost {name}=0.002) "
                f"or a price per million tokens (--price {name}=0.5/1.5); built-in prices: "
                f"{', '.join(DEFAULT_PRICES)}"
            )
        pricing = per_token.get(token_key) or DEFAULT_PRICES[token_key]
        if counter is None:
            from budgets import TokenCounter

            counter = TokenCounter.for_model(_COUNT_WITH)
            prompt_tokens = np.array([counter.count_text(p) for p in prompts], dtype=float)
        assert prompt_tokens is not None
        answers = responses.get(name)
        if answers is not None and all(answers[i] is not None for i in rows):
            out = np.array([counter.count_text(answers[i] or "") for i in rows], dtype=float)
            how = "tokens of each prompt and of its answer"
        elif output_tokens is not None:
            out = np.full(len(prompts), float(output_tokens))
            how = f"tokens of each prompt and {output_tokens} output tokens per call"
        else:
            out = np.zeros(len(prompts))
            how = (
                "tokens of each prompt only (no answers in the file: give "
                "--output-tokens N to count N per call)"
            )
        cost[:, j] = (
            prompt_tokens * float(pricing.input_per_mtok) + out * float(pricing.output_per_mtok)
        ) / 1e6
        source = "" if _lookup(per_token, name) else " (built-in)"
        notes.append(
            f"{name}: ${float(pricing.input_per_mtok):g}/${float(pricing.output_per_mtok):g} "
            "per million "
            f"input/output tokens{source}, on the {how}"
        )
    return cost, notes
