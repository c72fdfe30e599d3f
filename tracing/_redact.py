"""Keep secrets off spans, events and log lines.

``redact(text)`` replaces anything that looks like an API key or credential with
``[REDACTED]``: provider keys (``sk-…``, ``sk-ant-…``, ``hf_…``, ``ghp_…``, ``AKIA…``,
``AIza…``, JWTs), ``Bearer``/``Basic`` credentials, ``Authorization`` headers and the value
of any ``api_key=``/``"api_key": …``/``password=``/``token=``-style pair, in plain text,
JSON, Python reprs and URLs alike.

``register_secrets(values)`` adds the values an application configured (API keys, header
values, cloud credentials) to a process-wide registry; ``redact`` replaces every
registered value too, whatever its shape (a 32-hex key a server echoes back has none).
``install_log_redaction(names)`` puts a ``RedactingFilter`` on named loggers (litellm's,
httpx's, ...) so their records are scrubbed before any handler sees them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import quote, quote_plus

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTION",
    "SECRET_KEYS",
    "RedactingFilter",
    "install_log_redaction",
    "is_secret_key",
    "redact",
    "redact_mapping",
    "register_secrets",
]

REDACTION: Final = "[REDACTED]"

# Names whose values are credentials wherever they appear (mapping keys, headers, kwargs).
SECRET_KEYS: Final = frozenset(
    {
        "apikey",
        "authorization",
        "proxy_authorization",
        "password",
        "passwd",
        "secret",
        "token",
    }
)
# ... and any name ending like these (OPENAI_API_KEY, x-api-key, aws_secret_access_key).
_SECRET_SUFFIXES: Final = (
    "api_key",
    "apikey",
    "api_token",
    "access_token",
    "auth_token",
    "session_token",
    "client_secret",
    "secret_key",
    "secret_access_key",
    "password",
    "passwd",
)

# name = value / "name": "value" / 'name': 'value' / Name: Bearer value. The name is a
# whole identifier (the lookbehind anchors it, keeping the scan linear); whether it names
# a secret is decided in Python by is_secret_key.
_PAIR = re.compile(
    r"(?P<key>(?<![\w\-])[\"']?(?P<name>[A-Za-z_][\w\-]{0,63})[\"']?\s*[:=]\s*)"
    r"(?P<quote>[\"']?)"
    r"(?P<value>(?:(?:Bearer|Basic|Token|Digest)\s+)?[^\s\"',;&}\]\)]+)",
    re.IGNORECASE,
)

_TOKEN_PATTERNS: Final = (
    # Authorization schemes standing alone ("Bearer abc…").
    re.compile(r"\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{3,}", re.IGNORECASE),
    # OpenAI / Anthropic / DeepSeek style keys: sk-…, sk-proj-…, sk-ant-…
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"),
    # Stripe style: sk_live_…, rk_test_…
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{6,}"),
    # Hugging Face, Groq, Replicate, GitHub, Slack, Google, AWS access key ids.
    re.compile(r"\bhf_[A-Za-z0-9]{10,}"),
    re.compile(r"\bgsk_[A-Za-z0-9]{10,}"),
    re.compile(r"\br8_[A-Za-z0-9]{10,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    # JSON Web Tokens.
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    # Credentials in URLs: scheme://user:password@host
    re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"),
)


# Redaction runs on every span's text and most text holds no secret, so each pattern
# after the first runs only when its text holds one of the substrings the pattern cannot
# match without (checked case-sensitively, after a one-character pre-check that memchr
# answers at once), in the same order: (pattern, pre-check character, substrings).
_GATED: Final[tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...]] = tuple(
    (pattern, pre, substrings)
    for pattern, (pre, substrings) in zip(
        _TOKEN_PATTERNS[1:],
        (
            ("-", ("sk-",)),
            ("_", ("_live_", "_test_")),
            ("_", ("hf_",)),
            ("_", ("gsk_",)),
            ("_", ("r8_",)),
            ("_", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
            ("_", ("github_pat_",)),
            ("-", ("xox",)),
            ("z", ("AIza",)),
            ("A", ("AKIA", "ASIA")),
            ("J", ("eyJ",)),
            ("@", ("@",)),
        ),
        strict=True,
    )
)
_SCHEME: Final = _TOKEN_PATTERNS[0]  # Bearer/Basic: ignores case, gated on the lowercase
# The non-ASCII letters an IGNORECASE pattern matches to an ASCII letter (İ ı ſ K).
_CASE_FOLD: Final = {0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
_FOLDED: Final = tuple(map(chr, _CASE_FOLD))
# A name is_secret_key accepts ends like one of these once lowercased (and "-" made
# "_"), and _PAIR finds it only right before its separator: where neither is in the
# lowercased text, _PAIR has nothing to redact.
_PAIR_ENDINGS: Final = ("key", "token", "secret", "passwd", "password", "authorization")
_PAIR_HINT: Final = re.compile(rf"(?:{'|'.join(_PAIR_ENDINGS)})[\"']?\s*[:=]")
assert all(k.endswith(_PAIR_ENDINGS) for k in (*SECRET_KEYS, *_SECRET_SUFFIXES))


# -- registered secrets -----------------------------------------------------------------
# Values shorter than this are not registered: scrubbing "admin" or "none" from every
# text would mangle ordinary words and prove nothing.
MIN_SECRET_LENGTH: Final = 6
_secrets_lock = threading.Lock()
_secret_set: frozenset[str] = frozenset()
# What redact scans for, longest first (a secret containing another goes whole). One
# ``in`` per secret beats a regex alternation by far on long text: sre tries every branch
# at every position whose character could start one (any hex digit, for a hex key),
# while ``str.__contains__`` skips ahead in C. Swapped whole, so readers need no lock.
_secrets: tuple[str, ...] = ()


def _forms(value: str) -> set[str]:
    """``value`` and how it reads once escaped in JSON, a Python repr or a URL."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH and f not in REDACTION}


def register_secrets(values: Iterable[str | None]) -> None:
    """Make ``redact`` (and so every span, export and log filter) replace these values.

    For secrets that have no recognisable shape: an API key of 32 hex digits, a header
    value, a cloud credential. Values shorter than ``MIN_SECRET_LENGTH`` characters (and
    None) are ignored. Registration is process-wide, thread-safe and permanent; a value
    already registered costs a set lookup.
    """
    global _secret_set, _secrets
    fresh: set[str] = set()
    for value in values:
        if (
            isinstance(value, str)
            and len(value) >= MIN_SECRET_LENGTH
            and value not in _secret_set
            and value.strip()
        ):
            fresh |= _forms(value)
    if not fresh:
        return
    with _secrets_lock:
        merged = _secret_set | fresh
        if merged != _secret_set:
            _secrets = tuple(sorted(merged, key=lambda v: (-len(v), v)))
            _secret_set = merged


def _replace_pair(match: re.Match[str]) -> str:
    if not is_secret_key(match.group("name")):
        return match.group(0)
    return f"{match.group('key')}{match.group('quote')}{REDACTION}"


def redact(text: str) -> str:
    """``text`` with every credential-looking substring replaced by ``[REDACTED]``.

    Cheap on text without secrets (a few substring scans, a regex pass only where a
    pattern could match); safe to call on anything that goes on a span, an event or a
    log line.
    """
    if not text:
        return text
    out = text
    secrets = _secrets
    if secrets and len(text) >= len(secrets[-1]):  # else too short to hold any
        for secret in secrets:
            if secret in out:
                out = out.replace(secret, REDACTION)
    lower = out.lower()
    if "=" in out or ":" in out:
        for ending in _PAIR_ENDINGS:  # is_secret_key lowercases the name too
            if ending in lower:
                if _PAIR_HINT.search(lower):
                    paired = _PAIR.sub(_replace_pair, out)
                    if paired is not out:
                        out, lower = paired, paired.lower()
                break
    if not out.isascii() and any(c in out for c in _FOLDED):
        lower = out.translate(_CASE_FOLD).lower()
    if "bearer" in lower or "basic" in lower:
        out = _SCHEME.sub(REDACTION, out)
    for pattern, pre, substrings in _GATED:
        if pre in out:
            for sub in substrings:
                if sub in out:
                    out = pattern.sub(REDACTION, out)
                    break
    return out


def is_secret_key(name: str) -> bool:
    """Whether a mapping key or header name holds a credential (``api_key``, ...)."""
    normal = name.lower().replace("-", "_")
    return normal in SECRET_KEYS or normal.endswith(_SECRET_SUFFIXES)


def redact_mapping(value: Any) -> Any:
    """A JSON-able copy of ``value`` with secret keys dropped and strings redacted."""
    if isinstance(value, Mapping):
        return {str(k): redact_mapping(v) for k, v in value.items() if not is_secret_key(str(k))}
    if isinstance(value, list | tuple):
        return [redact_mapping(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that redacts credentials from every record it sees.

    Attach it to a handler (``handler.addFilter(tracing.RedactingFilter())``) so that
    records from every logger, including litellm's and httpx's, are scrubbed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when it emits
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Format the traceback now, redacted, so handlers print the clean text.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            record.exc_info = None
        return True


# One filter for every logger install_log_redaction touches, so installing twice is a no-op.
_LOG_FILTER: Final = RedactingFilter()


def install_log_redaction(names: Iterable[str]) -> RedactingFilter:
    """Scrub the records of the loggers ``names`` (and of their existing descendants)
    with ``redact``, registered secrets included, before any handler formats them.

    The filter goes on each logger, where ``Logger.handle`` applies it before every
    handler, the application's root handlers included; a filter on a parent logger never
    sees a child's records, hence the descendants (``httpcore.http11``,
    ``openai._base_client``) and the handlers of these loggers (for children created
    later). Idempotent; returns the filter.
    """
    prefixes = tuple(names)
    dotted = tuple(f"{name}." for name in prefixes)
    manager = logging.Logger.manager
    loggers = [logging.getLogger(name) for name in prefixes]
    loggers += [
        logger
        for name, logger in list(manager.loggerDict.items())
        if name.startswith(dotted) and isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)
        for handler in logger.handlers:
            if _LOG_FILTER not in handler.filters:
                handler.addFilter(_LOG_FILTER)
    return _LOG_FILTER
