"""Token counting: offline tiktoken, chat overhead, approximations, engine tokenizers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import budgets._encodings as encodings
from budgets import TokenCounter
from budgets._tokens import _for_model, encoding_for_model, render_tools

SAMPLES = [
    "hello world",
    "Bonjour à tous, ça va? 日本語のテキスト — emoji 🎉 and numbers 1234567",
    "def f(x):\n    return x ** 2  # comment\n\n\n",
    "text with <|endoftext|> and <|fim_prefix|> inside is still text",
    "   leading and trailing spaces   ",
]

# Runs in a fresh interpreter with every socket refused: any download attempt is
# recorded and fails. The control case proves the trap works (tiktoken itself would
# download o200k_base here).
_OFFLINE = r"""
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:2]))
    raise OSError("network unreachable (test)")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
result = {}
if sys.argv[1] == "control":
    import tiktoken
    try:
        tiktoken.get_encoding("o200k_base")
        result["loaded"] = True
    except Exception as exc:
        result["loaded"] = False
else:
    from budgets import TokenCounter
    counter = TokenCounter.for_model(sys.argv[1])
    result.update(method=counter.method, exact=counter.exact,
                  tokens=counter.count_text("hello world, counted offline"))
result["attempts"] = attempts
result["litellm_imported"] = "litellm" in sys.modules
print(json.dumps(result))
"""


def _offline(arg: str, tmp_path: Path) -> dict[str, object]:
    cache, tmp = tmp_path / "empty-tiktoken-cache", tmp_path / "tmp"
    cache.mkdir(parents=True)
    tmp.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if "CACHE_DIR" not in k}
    env |= {"TIKTOKEN_CACHE_DIR": str(cache), "TMPDIR": str(tmp)}
    done = subprocess.run(
        [sys.executable, "-c", _OFFLINE, arg], env=env, capture_output=True, text=True, check=True
    )
    assert list(cache.iterdir()) == []  # nothing was written into the cache either
    assert list(tmp.iterdir()) == []
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_encodings_load_offline_without_a_download(tmp_path: Path) -> None:
    control = _offline("control", tmp_path / "control")
    assert control["loaded"] is False
    assert control["attempts"]  # the trap catches tiktoken's download

    result = _offline("gpt-4o", tmp_path / "budgets")
    assert result["method"] == "tiktoken:o200k_base"
    assert result["exact"] is True
    assert result["tokens"] == 5  # hello | ␣world | , | ␣counted | ␣offline
    assert result["attempts"] == []
    assert result["litellm_imported"] is False  # found its files without importing it


@pytest.fixture
def tiktoken_cache_from_litellm(monkeypatch: pytest.MonkeyPatch) -> Path:
    bundled = encodings._litellm_tokenizers()
    assert bundled is not None, "litellm ships the encodings this test compares against"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(bundled))
    return bundled


@pytest.mark.parametrize(
    ("model", "encoding"),
    [("gpt-4o", "o200k_base"), ("gpt-4", "cl100k_base"), ("text-davinci-003", "p50k_base")],
)
def test_same_tokens_as_tiktoken_itself(
    model: str, encoding: str, tiktoken_cache_from_litellm: Path
) -> None:
    import tiktoken

    reference = tiktoken.get_encoding(encoding)  # from the cache dir: no download
    counter = TokenCounter.for_model(model)
    ours = counter._encoding  # type: ignore[attr-defined]
    assert ours.n_vocab == reference.n_vocab
    assert ours.special_tokens_set == reference.special_tokens_set
    for text in SAMPLES:
        assert ours.encode(text, allowed_special="all") == reference.encode(
            text, allowed_special="all"
        )
        assert counter.count_text(text) == len(reference.encode_ordinary(text))


@pytest.mark.parametrize(
    ("model", "encoding", "exact"),
    [
        ("gpt-4o", "o200k_base", True),
        ("openai/gpt-4o-mini", "o200k_base", True),
        ("gpt-4o-2024-08-06", "o200k_base", True),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base", True),
        ("o1", "o200k_base", True),
        ("o3-mini", "o200k_base", True),
        ("gpt-4.1-nano", "o200k_base", True),
        ("gpt-5", "o200k_base", True),
        ("gpt-4", "cl100k_base", True),
        ("gpt-4-turbo", "cl100k_base", True),
        ("azure/gpt-35-turbo", "cl100k_base", True),
        ("gpt-3.5-turbo", "cl100k_base", True),
        ("text-davinci-003", "p50k_base", True),
        ("openai/smollm2-135m", "cl100k_base", False),
        ("claude-3-5-sonnet", "cl100k_base", False),
        ("o1x-local", "cl100k_base", False),  # a prefix must end at a separator
    ],
)
def test_model_to_encoding(model: str, encoding: str, exact: bool) -> None:
    assert encoding_for_model(model) == (encoding, exact)
    counter = TokenCounter.for_model(model)
    assert (counter.method, counter.exact) == (f"tiktoken:{encoding}", exact)


def test_counters_are_cached_per_model() -> None:
    assert TokenCounter.for_model("gpt-4o") is TokenCounter.for_model("gpt-4o")


def test_message_overhead_follows_the_cookbook() -> None:
    counter = TokenCounter.for_model("gpt-4")
    text = counter.count_text
    # 3 per message + its values ("user" is 1 token, "hello world" 2) + 3 reply primer
    assert text("user") == 1
    assert text("hello world") == 2
    assert counter.count_messages([{"role": "user", "content": "hello world"}]) == 9
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "name": "ada", "content": "hello world"},
    ]
    by_hand = (
        3
        + (3 + text("system") + text("You are terse."))
        + (3 + text("user") + text("ada") + 1 + text("hello world"))
    )
    assert counter.count_messages(messages) == by_hand


def test_parts_tool_calls_and_tools_are_counted() -> None:
    counter = TokenCounter.for_model("gpt-4o")
    text = counter.count_text
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    assert (
        counter.count_messages(parts) == 3 + 3 + text("user") + text("What is in this image?") + 85
    )
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
        ],
    }
    assert (
        counter.count_messages([call])
        == 3 + 3 + text("assistant") + text("add") + text('{"a":1}') + 3
    )

    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "City name"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                        "days": {"type": "integer"},
                    },
                    "required": ["city"],
                },
            },
        }
    ]
    rendered = render_tools(tools)
    assert "// Weather for a city.\ntype get_weather = (_: {\n// City name\ncity: string," in (
        rendered
    )
    assert 'unit?: "c" | "f",\ndays?: number,\n}) => any;' in rendered
    plain = [{"role": "user", "content": "hi"}]
    assert counter.count_messages(plain, tools) - counter.count_messages(plain) == (
        text(rendered) + 9
    )


@pytest.fixture
def no_encoding_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(encodings, "encoding_dirs", list)
    monkeypatch.setattr(encodings, "_loaded", {})
    _for_model.cache_clear()
    yield
    _for_model.cache_clear()


@pytest.mark.usefixtures("no_encoding_files")
def test_without_any_encoding_file_counts_a_quarter_of_the_characters() -> None:
    counter = TokenCounter.for_model("gpt-4o")
    assert (counter.method, counter.exact) == ("approx:chars/4", False)
    assert counter.count_text("abcdefgh") == 2
    assert counter.count_text("abcdefghi") == 3  # rounded up: budgets err high
    assert counter.count_messages([{"role": "user", "content": "abcd"}]) == 3 + 1 + 1 + 3


def test_user_cache_dirs_come_first_and_bad_files_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = encodings._litellm_tokenizers()
    assert bundled is not None
    spec = encodings.ENCODINGS["cl100k_base"]
    custom, broken = tmp_path / "custom", tmp_path / "broken"
    custom.mkdir()
    broken.mkdir()
    shutil.copy(bundled / spec["cache_name"], custom / "cl100k_base.tiktoken")
    (broken / spec["cache_name"]).write_bytes(b"truncated download")
    monkeypatch.setenv("CUSTOM_TIKTOKEN_CACHE_DIR", str(broken))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(custom))

    assert encodings.encoding_dirs()[:2] == [broken, custom]
    found = encodings.find_encoding_file("cl100k_base")
    assert found is not None
    assert found[0] == custom / "cl100k_base.tiktoken"
