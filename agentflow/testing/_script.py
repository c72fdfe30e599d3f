"""What a test scripts the loopback server with: ``Reply`` and ``Fault``; what it records.

A script is a FIFO of ``Reply`` and ``Fault`` entries; each model call (chat,
text completion or embeddings) consumes one. ``RecordedRequest`` is what the
server remembers of every request it received.
"""

from __future__ import annotations

import json as _json
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from agentflow.testing._tokens import split_words

__all__ = ["Fault", "RecordedRequest", "Reply", "ScriptEntry"]

FaultKind = Literal["status", "hang", "malformed_json", "reset", "stream_cut"]


@dataclass(frozen=True)
class Reply:
    """A successful answer.

    ``text=None`` (with no ``json`` and no ``tool_calls``) answers with the
    server's echo of the last user message. Token counts left as None are
    computed from the request and the text; ``cached_tokens=None`` leaves
    ``usage.prompt_tokens_details`` out entirely, as engines that do not report it
    do (unless the server simulates a prefix cache). ``cache_write_tokens`` reports
    prompt tokens written to the provider's cache (``prompt_tokens_details.
    cache_write_tokens``, where litellm puts Anthropic's ``cache_creation_input_tokens``).
    ``logprobs`` is a list with
    one float per word of the text, True (or None) for plausible values, or False
    for none; they are sent only when the request asks for logprobs. ``chunk_delay`` is
    the pause between a stream's chunks; on a plain reply it drips the body 16 bytes at
    a time with that pause between them.
    """

    text: str | None = None
    _: KW_ONLY
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    completion_tokens: int | None = None
    cache_write_tokens: int = 0
    logprobs: Sequence[float] | bool | None = None
    tool_calls: Sequence[Mapping[str, Any]] | None = None
    latency: float = 0.0
    finish_reason: str | None = None
    model: str | None = None
    chunk_delay: float = 0.0
    json: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.text is not None and self.json is not None:
            raise ValueError("Reply takes text or json, not both: json=... becomes the text.")
        for name in ("prompt_tokens", "cached_tokens", "completion_tokens", "cache_write_tokens"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Reply({name}={value}): token counts must be >= 0.")
        if (
            self.prompt_tokens is not None
            and (self.cached_tokens or 0) + self.cache_write_tokens > self.prompt_tokens
        ):
            raise ValueError(
                f"Reply(cached_tokens={self.cached_tokens}, cache_write_tokens="
                f"{self.cache_write_tokens}) exceeds prompt_tokens={self.prompt_tokens}: "
                "cached and cache-written tokens are part of the prompt."
            )
        if self.latency < 0 or self.chunk_delay < 0:
            raise ValueError("Reply latency and chunk_delay are seconds and must be >= 0.")
        if not isinstance(self.logprobs, bool | None):
            words = self.answer_text()
            if words is None:
                raise ValueError(
                    "Reply(logprobs=[...]) needs text=... (one logprob per word of it)."
                )
            n = len(split_words(words))
            if len(self.logprobs) != n:
                raise ValueError(
                    f"Reply has {n} words but {len(self.logprobs)} logprobs; give one "
                    "logprob per whitespace-separated word, or logprobs=True."
                )
            if any(lp > 0 for lp in self.logprobs):
                raise ValueError("logprobs are log-probabilities and must be <= 0.")
        for call in self.tool_calls or ():
            if not isinstance(call.get("name"), str):
                raise ValueError(
                    'each tool call is {"name": str, "arguments": dict or JSON string}; '
                    f"got {call!r}"
                )

    def answer_text(self) -> str | None:
        """The scripted text (``json`` dumped), or None when the server should echo."""
        if self.json is not None:
            return _json.dumps(self.json)
        return self.text


@dataclass(frozen=True)
class Fault:
    """A failure the server produces instead of an answer. Build one with a classmethod."""

    kind: FaultKind
    status_code: int = 500
    retry_after: float | None = None
    body: Mapping[str, Any] | str | None = None
    seconds: float = 0.0
    after_chunks: int = 0

    @classmethod
    def status(
        cls,
        code: int,
        *,
        retry_after: float | None = None,
        body: Mapping[str, Any] | str | None = None,
    ) -> Fault:
        """An HTTP error ``code`` with an OpenAI-shaped JSON error body.

        ``retry_after`` (seconds) sets the ``Retry-After`` header. ``body`` is the
        error message (a string) or the whole JSON body (a mapping).
        """
        if not 400 <= code <= 599:
            raise ValueError(f"Fault.status({code}): use an error status, 400 to 599.")
        return cls("status", status_code=code, retry_after=retry_after, body=body)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Read the request, wait ``seconds`` (past the client's timeout), close unanswered."""
        return cls("hang", seconds=seconds)

    @classmethod
    def malformed_json(cls) -> Fault:
        """Answer 200 with a body that is not JSON (a broken SSE event when streaming)."""
        return cls("malformed_json")

    @classmethod
    def reset(cls) -> Fault:
        """Drop the TCP connection with an RST (SO_LINGER 0): a connection reset."""
        return cls("reset")

    @classmethod
    def stream_cut(cls, after_chunks: int = 2) -> Fault:
        """Stream up to ``after_chunks`` content chunks, then drop the connection.

        No final chunk, no usage, no ``[DONE]``: the chunked body is left incomplete,
        so the client sees an error mid-stream. On a non-streaming request half of the
        JSON body is sent before the connection drops.
        """
        if after_chunks < 0:
            raise ValueError("Fault.stream_cut(after_chunks=...) must be >= 0.")
        return cls("stream_cut", after_chunks=after_chunks)


ScriptEntry = Reply | Fault


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it.

    ``headers`` has lower-cased names; ``body`` is the parsed JSON (None when the
    body was empty or not JSON); ``time`` is ``time.time()`` at arrival; ``peer``
    is the client's (host, port): requests on one keep-alive connection share it.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float
    peer: tuple[str, int] = ("", 0)
    raw_body: bytes = field(default=b"", repr=False)

    @property
    def model(self) -> str | None:
        """The ``model`` field of a JSON body, if any."""
        if isinstance(self.body, Mapping):
            model = self.body.get("model")
            return model if isinstance(model, str) else None
        return None
