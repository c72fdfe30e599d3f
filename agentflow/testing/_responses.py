"""OpenAI-shaped response bodies and stream events built from a ``Reply``.

Pure functions of (reply, request body, counts): no sockets, no threads. The
server (``_server.py``) decides which reply answers, and sends what these build.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentflow.testing._script import Reply
from agentflow.testing._tokens import (
    count_tokens,
    embed,
    float32_base64,
    last_user_text,
    plausible_logprob,
    prompt_tokens_of_chat,
    render_chat,
    split_words,
    top_alternatives,
)

Kind = Literal["chat", "completion", "embeddings"]
SYSTEM_FINGERPRINT = "fp_agentflow_loopback"
ERROR_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def error_body(status: int, message: str) -> dict[str, Any]:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    kind, code = ERROR_TYPES.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


@dataclass(frozen=True)
class Prompt:
    """What the server reads from a chat or completion request."""

    rendered: str  # what a prefix cache would compare
    tokens: int  # prompt_tokens when the reply does not fix them
    echo: str  # the default answer


def read_prompt(kind: Kind, body: Mapping[str, Any]) -> Prompt:
    if kind == "chat":
        messages = [m for m in body.get("messages") or [] if isinstance(m, Mapping)]
        tools = body.get("tools")
        return Prompt(
            render_chat(messages, tools),
            prompt_tokens_of_chat(messages, tools),
            f"echo: {last_user_text(messages)}",
        )
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = "".join(p for p in prompt if isinstance(p, str))
    text = str(prompt)
    return Prompt(text, max(1, count_tokens(text)), f"echo: {text}")


@dataclass(frozen=True)
class Answer:
    """A reply resolved against one request: everything a response needs."""

    kind: Kind
    id: str
    created: int
    model: str
    text: str | None
    tokens: list[str]
    logprobs: list[float] | None  # None: not sent
    top_k: int
    tool_calls: list[dict[str, Any]]
    finish_reason: str
    usage: dict[str, Any]


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    arguments = call.get("arguments", {})
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {
        "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
        "type": "function",
        "function": {"name": call["name"], "arguments": arguments},
    }


def usage_body(prompt: int, completion: int, cached: int | None, writes: int = 0) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    details: dict[str, int] = {}
    if cached is not None:
        details["cached_tokens"] = cached
    if writes:
        details["cache_write_tokens"] = writes
    if details:
        usage["prompt_tokens_details"] = details
    return usage


def _wants_logprobs(kind: Kind, body: Mapping[str, Any]) -> tuple[bool, int]:
    if kind == "chat":
        return body.get("logprobs") is True, int(body.get("top_logprobs") or 0)
    value = body.get("logprobs")  # legacy completions: an int, 0 included
    if value is None or value is False:
        return False, 0
    return True, int(value)


def build_answer(
    reply: Reply,
    kind: Kind,
    body: Mapping[str, Any],
    prompt: Prompt,
    cached_tokens: int | None,
) -> Answer:
    """Resolve ``reply`` for this request: text, truncation, logprobs, usage."""
    tool_calls = [_tool_call(c) for c in reply.tool_calls or ()]
    text = reply.answer_text()
    if text is None and not tool_calls:
        text = prompt.echo
    tokens = split_words(text or "")
    scripted = list(reply.logprobs) if not isinstance(reply.logprobs, bool | None) else None
    finish = "tool_calls" if tool_calls else "stop"
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and not tool_calls and len(tokens) > limit:
        tokens = tokens[:limit]
        text = "".join(tokens)
        scripted = scripted[:limit] if scripted is not None else None
        finish = "length"
    elif text and tokens and "".join(tokens) != text:
        tokens[-1] += text[len("".join(tokens)) :]  # keep trailing whitespace

    wanted, top_k = _wants_logprobs(kind, body)
    logprobs: list[float] | None = None
    if wanted and reply.logprobs is not False:
        logprobs = scripted or [plausible_logprob(t, i) for i, t in enumerate(tokens)]

    if reply.completion_tokens is not None:
        completion = reply.completion_tokens
    elif tool_calls:
        words = sum(len(split_words(c["function"]["arguments"])) for c in tool_calls)
        completion = max(1, words + len(tokens))
    else:
        completion = max(1, len(tokens))
    prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else prompt.tokens
    cached = reply.cached_tokens if reply.cached_tokens is not None else cached_tokens
    if cached is not None:
        cached = min(cached, prompt_tokens)
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return Answer(
        kind=kind,
        id=f"{prefix}-{uuid.uuid4().hex[:24]}",
        created=int(time.time()),
        model=reply.model or str(body.get("model") or "loopback"),
        text=text,
        tokens=tokens,
        logprobs=logprobs,
        top_k=top_k,
        tool_calls=tool_calls,
        finish_reason=reply.finish_reason or finish,
        usage=usage_body(prompt_tokens, completion, cached, reply.cache_write_tokens),
    )


def _chat_logprob_entries(tokens: Sequence[str], lps: Sequence[float], k: int) -> list[Any]:
    return [
        {
            "token": t,
            "logprob": lp,
            "bytes": list(t.encode("utf-8")),
            "top_logprobs": top_alternatives(t, lp, k),
        }
        for t, lp in zip(tokens, lps, strict=True)
    ]


def _legacy_logprobs(tokens: Sequence[str], lps: Sequence[float], k: int, start: int) -> Any:
    offsets, pos = [], start
    for t in tokens:
        offsets.append(pos)
        pos += len(t)
    return {
        "tokens": list(tokens),
        "token_logprobs": list(lps),
        "top_logprobs": [
            {e["token"]: e["logprob"] for e in top_alternatives(t, lp, k)}
            for t, lp in zip(tokens, lps, strict=True)
        ]
        if k
        else None,
        "text_offset": offsets,
    }


def _head(answer: Answer, obj: str) -> dict[str, Any]:
    return {
        "id": answer.id,
        "object": obj,
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def response_body(answer: Answer) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` or ``text_completion`` body."""
    lps = answer.logprobs
    if answer.kind == "chat":
        message: dict[str, Any] = {"role": "assistant", "content": answer.text}
        if answer.tool_calls:
            message["tool_calls"] = answer.tool_calls
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "logprobs": None
            if lps is None
            else {"content": _chat_logprob_entries(answer.tokens, lps, answer.top_k)},
            "finish_reason": answer.finish_reason,
        }
        return {**_head(answer, "chat.completion"), "choices": [choice], "usage": answer.usage}
    choice = {
        "index": 0,
        "text": answer.text or "",
        "logprobs": None if lps is None else _legacy_logprobs(answer.tokens, lps, answer.top_k, 0),
        "finish_reason": answer.finish_reason,
    }
    return {**_head(answer, "text_completion"), "choices": [choice], "usage": answer.usage}


StreamEvent = tuple[Literal["head", "content", "tail"], dict[str, Any]]


def stream_events(answer: Answer, include_usage: bool) -> Iterator[StreamEvent]:
    """The SSE payloads of a stream, each tagged (a ``stream_cut`` counts "content")."""
    usage_field = {"usage": None} if include_usage else {}
    lps = answer.logprobs
    if answer.kind == "chat":
        head = _head(answer, "chat.completion.chunk")

        def chunk(delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> Any:
            choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            return {**head, "choices": [choice], **usage_field}

        yield "head", chunk({"role": "assistant", "content": "" if answer.text else None})
        for i, token in enumerate(answer.tokens):
            lp = None
            if lps is not None:
                lp = {"content": _chat_logprob_entries([token], [lps[i]], answer.top_k)}
            yield "content", chunk({"content": token}, lp)
        for i, call in enumerate(answer.tool_calls):
            fn = call["function"]
            start = {**call, "index": i, "function": {"name": fn["name"], "arguments": ""}}
            yield "content", chunk({"tool_calls": [start]})
            more = {"index": i, "function": {"arguments": fn["arguments"]}}
            yield "content", chunk({"tool_calls": [more]})
        yield "tail", chunk({}, finish=answer.finish_reason)
    else:
        head = _head(answer, "text_completion")
        offset = 0
        for i, token in enumerate(answer.tokens):
            lp = None
            if lps is not None:
                lp = _legacy_logprobs([token], [lps[i]], answer.top_k, offset)
            offset += len(token)
            choice = {"index": 0, "text": token, "logprobs": lp, "finish_reason": None}
            yield "content", {**head, "choices": [choice], **usage_field}
        choice = {"index": 0, "text": "", "logprobs": None, "finish_reason": answer.finish_reason}
        yield "tail", {**head, "choices": [choice], **usage_field}
    if include_usage:
        yield "tail", {**head, "choices": [], "usage": answer.usage}


def embeddings_body(reply: Reply, body: Mapping[str, Any], default_dim: int) -> dict[str, Any]:
    """Deterministic unit vectors, one per input string; ``usage.prompt_tokens``."""
    raw = body.get("input", "")
    items: list[Any] = raw if isinstance(raw, list) else [raw]
    if items and all(isinstance(i, int) for i in items):
        items = [items]  # one input given as token ids
    texts = [i if isinstance(i, str) else json.dumps(i) for i in items]
    dim = body.get("dimensions") or default_dim
    base64 = body.get("encoding_format") == "base64"
    data = []
    for index, text in enumerate(texts):
        vec = embed(text, int(dim))
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": float32_base64(vec) if base64 else vec,
            }
        )
    tokens = reply.prompt_tokens
    if tokens is None:
        tokens = max(1, sum(count_tokens(t) for t in texts))
    return {
        "object": "list",
        "data": data,
        "model": reply.model or str(body.get("model") or "loopback-embedding"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
