"""Offline tiktoken encodings: find the BPE file on disk, never download it.

tiktoken fetches an encoding from the network the first time it is used and caches it
under a file named after the SHA-1 of its URL. agentflow runs where there is no network,
so this module looks for those files where they already are, in this order:

1. ``$CUSTOM_TIKTOKEN_CACHE_DIR`` (litellm's name for a user-supplied cache; litellm
   overwrites ``TIKTOKEN_CACHE_DIR`` when it is imported),
2. ``$TIKTOKEN_CACHE_DIR`` and ``$DATA_GYM_CACHE_DIR`` (tiktoken's own),
3. tiktoken's default cache, ``<tempdir>/data-gym-cache``,
4. the copies litellm ships in ``litellm/litellm_core_utils/tokenizers/`` (cl100k_base,
   o200k_base, p50k_base), located with ``importlib.util.find_spec`` so litellm is never
   imported (that costs seconds).

In each directory a file is accepted under tiktoken's cache name or as
``<encoding>.tiktoken``, and only if its SHA-256 matches the hash tiktoken pins, so a
truncated or foreign file is skipped rather than silently miscounting.

The file is read and parsed here rather than through ``tiktoken.load.load_tiktoken_bpe``:
that function writes a copy of any file it reads into the cache directory, a side effect
(and a failure on a read-only cache) we do not want on the hot path.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

__all__ = ["ENCODINGS", "encoding_dirs", "find_encoding_file", "load_encoding"]

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

# Patterns and special tokens mirror tiktoken_ext/openai_public.py (tiktoken 0.14).
_R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|"""
    r"""\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)

ENCODINGS: dict[str, dict[str, Any]] = {
    "o200k_base": {
        "cache_name": "fb374d419588a4632f3f557e76b4b70aebbca790",
        "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        "pat_str": _O200K_PAT,
        "special_tokens": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    },
    "cl100k_base": {
        "cache_name": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "pat_str": _CL100K_PAT,
        "special_tokens": {
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    },
    "p50k_base": {
        "cache_name": "ec7223a39ce59f226a68acc30dc1af2788490e15",
        "sha256": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
        "pat_str": _R50K_PAT,
        "special_tokens": {_ENDOFTEXT: 50256},
        "explicit_n_vocab": 50281,
    },
}
"""The encodings we can load offline: tiktoken's cache file name, pinned hash, regex."""


def _litellm_tokenizers() -> Path | None:
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / "litellm_core_utils" / "tokenizers"
        if candidate.is_dir():
            return candidate
    return None


def encoding_dirs() -> list[Path]:
    """Directories searched for encoding files, in order (see the module docstring)."""
    dirs: list[Path] = []
    for var in ("CUSTOM_TIKTOKEN_CACHE_DIR", "TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    dirs.append(Path(tempfile.gettempdir()) / "data-gym-cache")
    bundled = _litellm_tokenizers()
    if bundled is not None:
        dirs.append(bundled)
    return list(dict.fromkeys(dirs))  # keep order, drop duplicates


def find_encoding_file(name: str) -> tuple[Path, bytes] | None:
    """The first file for encoding ``name`` whose hash matches, with its contents."""
    spec = ENCODINGS[name]
    for directory in encoding_dirs():
        for filename in (spec["cache_name"], f"{name}.tiktoken"):
            path = directory / filename
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() == spec["sha256"]:
                return path, data
    return None


def _parse_bpe(data: bytes) -> dict[bytes, int]:
    # the .tiktoken format, as tiktoken.load.load_tiktoken_bpe reads it
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


_lock = threading.Lock()
_loaded: dict[str, Any] = {}


def load_encoding(name: str) -> Any | None:
    """The ``tiktoken.Encoding`` for ``name``, or None if no file is on disk.

    Loaded once per process (parsing takes ~0.3 s); later calls are a dict lookup.
    """
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    with _lock:
        if name not in _loaded:
            found = find_encoding_file(name)
            if found is None:
                return None
            import tiktoken

            spec = ENCODINGS[name]
            _loaded[name] = tiktoken.Encoding(
                name=name,
                pat_str=spec["pat_str"],
                mergeable_ranks=_parse_bpe(found[1]),
                special_tokens=spec["special_tokens"],
                explicit_n_vocab=spec.get("explicit_n_vocab"),
            )
        return _loaded[name]
