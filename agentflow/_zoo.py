"""The model zoo: tiers of interchangeable endpoints, cheapest first.

``ModelZoo(tiers=[...])`` lists tiers in escalation order; each ``Tier`` holds one or more
``Endpoint`` replicas of one model and may name a ``fallback`` tier to try when all of
its replicas fail. Everything is validated when built, so a bad config fails at
``configure`` time with a message that says what to fix.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

import tracing
from agentflow import _secrets
from agentflow._errors import ConfigError, UnknownTierError
from budgets import Pricing, TokenPricing

__all__ = [
    "OPENAI_COMPATIBLE",
    "Endpoint",
    "ModelZoo",
    "Tier",
    "provider_of",
    "read_toml",
    "span_model_name",
]

OPENAI_COMPATIBLE = frozenset(
    {"openai", "hosted_vllm", "llamafile", "lm_studio", "custom_openai", "openai_like"}
)
"""litellm provider prefixes that mean "an OpenAI-compatible server at ``api_base``"."""

# litellm provider prefixes that are not part of the model's own name
_PROVIDERS = (
    "openai",
    "hosted_vllm",
    "vllm",
    "ollama",
    "ollama_chat",
    "azure",
    "anthropic",
    "gemini",
    "vertex_ai",
    "bedrock",
    "groq",
    "together_ai",
    "mistral",
    "deepseek",
    "openrouter",
    "fireworks_ai",
    "llamafile",
    "lm_studio",
    "text-completion-openai",
)


def span_model_name(model: str) -> str:
    """The model name that goes on spans (``llm.model_name``) and into Phoenix prices.

    litellm's provider prefix is routing, not the model: ``openai/smollm2-135m`` is
    ``smollm2-135m`` on spans.
    """
    provider, sep, rest = model.partition("/")
    if sep and provider in _PROVIDERS:
        return rest
    return model


def provider_of(model: str) -> str:
    provider, sep, _ = model.partition("/")
    if sep and provider in _PROVIDERS:
        return provider
    return "openai"


def read_toml(path: str | Path) -> dict[str, Any]:
    """The ``[agentflow]`` table of a TOML file (or the whole file if it has none)."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {err}") from None
    section = data.get("agentflow", data)
    return dict(section)


def _shown(loc: tuple[int | str, ...], value: Any) -> str:
    """What a validation message says it got, credentials and header values hidden."""
    secret = (_secrets.HEADER_PARAMS | {"api_key"}).intersection(map(str, loc)) or any(
        _secrets.is_credential_param(str(p)) for p in loc
    )
    if secret:
        return "a hidden value"
    if isinstance(value, Mapping):
        value = {
            k: "**********"
            if str(k) in _secrets.HEADER_PARAMS or _secrets.is_credential_param(str(k))
            else v
            for k, v in value.items()
        }
    return repr(value)


_HINTS = {
    "name": "give it a non-empty str name, e.g. 'workhorse'",
    "fallback": "name another tier of the zoo (a str), or leave fallback out",
    "model": "give a litellm model string, e.g. 'openai/smollm2-135m'",
    "api_base": "give the server's URL as a str, e.g. 'http://127.0.0.1:8081/v1'",
    "timeout": "give a positive number of seconds",
    "context_window": "give the model's context size in tokens (an int), e.g. 8192",
    "pricing": (
        "give a budgets.TokenPricing(...), a budgets.GpuHourPricing(...), or 'litellm' "
        "for an API model's prices from litellm's price map"
    ),
    "default_tier": "name one of the zoo's tiers",
}


def _format_validation_error(what: str, err: ValidationError) -> str:
    problems = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or what
        hint = _HINTS.get(str(e["loc"][0])) if e["loc"] else None
        problems.append(
            f"{loc}: {e['msg']} (got {_shown(e['loc'], e.get('input'))})"
            + (f"; {hint}" if hint else "")
        )
    return tracing.redact(f"invalid {what}: " + "; ".join(problems))


def _items(value: Any, what: str, kind: type, example: str) -> list[Any]:
    """``value`` as a list of ``kind`` objects or mappings, else a ConfigError."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise ConfigError(
            f"{what} must be a list of {kind.__name__} (or mappings of their fields), got "
            f"{type(value).__name__} {value!r:.80}; write e.g. {example}"
        )
    for i, item in enumerate(value):
        if not isinstance(item, kind | Mapping):
            raise ConfigError(
                f"{what}[{i}] must be an {kind.__name__} or a mapping of its fields, got "
                f"{type(item).__name__} {item!r:.80}; write e.g. {example}"
            )
    return list(value)


class _Model(BaseModel):
    """Turns pydantic's ValidationError into agentflow's ConfigError."""

    model_config = ConfigDict(frozen=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(_format_validation_error(type(self).__name__, err)) from None


class Endpoint(_Model):
    """One served model: a litellm model string, where it is served and what it costs.

    Extra keyword arguments are passed to litellm as they are (``timeout``,
    ``extra_headers``, ``api_version``, ...). ``api_key``, credential parameters
    (``aws_secret_access_key``, ``vertex_credentials``, ...) and header values
    (``extra_headers``, ``headers``; all but harmless ones like ``Content-Type``) are
    secrets: held as pydantic ``SecretStr``, masked in ``repr`` and ``model_dump``, and
    registered with ``tracing.register_secrets`` so that no span, export, error message
    or litellm/httpx log line shows them. ``litellm_params()`` hands litellm the plain
    values.

    ``transport``: ``"auto"`` (the default) calls an OpenAI-compatible server at
    ``api_base`` (``openai/``, ``hosted_vllm/``, ... models) on agentflow's own pooled
    HTTP client, the fast path; ``"litellm"`` sends every call through litellm.
    ``max_reply_bytes`` caps what is read of one reply on the fast path (16 MiB for chat,
    256 MiB for embeddings when not given).

    ``tool_choice_by_turn``: for a small model that cannot decide on its own whether to
    call a tool (a 135M model on a ``serve-local --tools`` replica): a request with tools
    and no ``tool_choice`` (or ``"auto"``) gets ``"required"`` on the user's turn and
    ``"none"`` once a tool has answered, one call at a time. So a prebuilt agent
    (``create_react_agent``) makes its tool round trip on it unchanged.

    ``counting``: how a budget counts a self-hosted endpoint's prompt before the call.
    ``"engine"`` (the default) asks the engine's ``/tokenize`` (exact; a prompt counted
    before is not asked again); ``"local"`` counts offline with no round trip, and the
    hold is scaled by how much larger the engine has been counting than we do.

    ``pricing``: a ``TokenPricing`` (APIs), a ``GpuHourPricing`` (self-hosted), or
    ``"litellm"``: the model's per-token prices, cache reads and writes included where
    the provider has them, from the price map of the installed litellm (read as a file,
    without importing litellm).

    ``context_window``: the tokens the model holds, prompt and output together. A prompt
    plus ``max_tokens`` that cannot fit is never sent there: the call goes to the tier's
    fallback, or fails at once naming the sizes. Left out, it is read from the engine
    (llama-server ``/props``, vLLM ``/v1/models``) while ``engine_load`` polls it.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    model: str = Field(min_length=1)
    api_base: str | None = None
    api_key: SecretStr | None = None
    pricing: Pricing | None = None
    name: str | None = None
    timeout: float = Field(default=60.0, gt=0)
    transport: Literal["auto", "litellm"] = "auto"
    counting: Literal["engine", "local"] = "engine"
    tool_choice_by_turn: bool = False
    max_reply_bytes: int | None = Field(default=None, gt=0)
    # tokens the model can hold (prompt + output); a call that cannot fit is not sent
    context_window: int | None = Field(default=None, gt=0)

    def __init__(self, **data: Any) -> None:
        if not data.get("model"):
            raise ConfigError(
                "an Endpoint needs a model, e.g. af.Endpoint(model='openai/smollm2-135m', "
                "api_base='http://127.0.0.1:8081/v1')"
            )
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _protect_secrets(cls, data: Any) -> Any:
        # extra fields are not validated: wrap the secret ones here
        if not isinstance(data, Mapping):
            return data
        declared = cls.model_fields
        return {k: v if k in declared else _secrets.protect(k, v) for k, v in data.items()}

    @model_validator(mode="before")
    @classmethod
    def _litellm_prices(cls, data: Any) -> Any:
        # pricing="litellm": the model's prices from litellm's price map (agentflow._price_map)
        if isinstance(data, Mapping) and data.get("pricing") == "litellm":
            from agentflow._price_map import litellm_pricing

            return {**data, "pricing": litellm_pricing(str(data.get("model") or ""))}
        return data

    @model_validator(mode="after")
    def _register_secrets(self) -> Endpoint:
        tracing.register_secrets(self.secret_values())
        return self

    @field_validator("pricing", mode="before")
    @classmethod
    def _pricing_kind(cls, v: Any) -> Any:
        # a TOML table rarely says its kind; the fields tell which pricing it is
        if isinstance(v, Mapping) and "kind" not in v:
            kind = "gpu_hour" if "usd_per_gpu_hour" in v else "token"
            return {"kind": kind, **v}
        return v

    @field_validator("api_base")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @property
    def id(self) -> str:
        """A stable name for this replica: ``name``, else ``model@api_base``."""
        if self.name:
            return self.name
        return f"{self.model}@{self.api_base}" if self.api_base else self.model

    @property
    def span_model(self) -> str:
        return span_model_name(self.model)

    @property
    def provider(self) -> str:
        return provider_of(self.model)

    @property
    def fast_path(self) -> bool:
        """Whether calls take agentflow's own HTTP client (an OpenAI-compatible provider
        with an ``api_base``), not litellm: ``transport="litellm"`` or the environment
        variable ``AGENTFLOW_TRANSPORT=litellm`` turns it off."""
        if self.transport == "litellm" or self.api_base is None:
            return False
        if os.environ.get("AGENTFLOW_TRANSPORT", "auto") == "litellm":
            return False
        return self.provider in OPENAI_COMPATIBLE

    @property
    def extra_params(self) -> dict[str, Any]:
        """The extra litellm parameters as held: secrets wrapped (see ``litellm_params``)."""
        return dict(self.model_extra or {})

    def secret_values(self) -> list[str]:
        """The plain values of this endpoint's secrets (key, credentials, header values)."""
        found = _secrets.secret_values(self.extra_params)
        if self.api_key is not None:
            found.append(self.api_key.get_secret_value())
        return found

    def litellm_params(self) -> dict[str, Any]:
        """litellm's keyword arguments for this endpoint, secrets in the clear."""
        params: dict[str, Any] = {"model": self.model, "timeout": self.timeout}
        if self.api_base:
            params["api_base"] = self.api_base
        if self.api_key is not None:
            params["api_key"] = self.api_key.get_secret_value()
        elif self.api_base:
            # a self-hosted endpoint needs no key, but the OpenAI client insists on one
            params["api_key"] = "none"
        extra = self.extra_params
        params.update(
            {
                k: _secrets.reveal(v)
                if k in _secrets.HEADER_PARAMS or _secrets.is_credential_param(k)
                else v
                for k, v in extra.items()
            }
        )
        # a copy made without validation (model_copy(update=...)) registers here
        tracing.register_secrets(self.secret_values())
        return params

    def token_pricing(self) -> TokenPricing | None:
        return None if self.pricing is None else self.pricing.per_token()


class Tier(_Model):
    """A named tier: interchangeable replicas of one model, and an optional fallback."""

    name: str = Field(min_length=1)
    endpoints: list[Endpoint] = Field(min_length=1)
    fallback: str | None = None

    def __init__(
        self,
        name: str | None = None,
        endpoints: Sequence[Endpoint | Mapping[str, Any]] | None = None,
        fallback: str | None = None,
        **data: Any,
    ) -> None:
        if name is not None:
            data["name"] = name
        if endpoints is not None:
            example = "endpoints=[af.Endpoint(model=...)]"
            data["endpoints"] = [
                e if isinstance(e, Endpoint) else Endpoint(**dict(e))
                for e in _items(endpoints, "endpoints", Endpoint, example)
            ]
        if not data.get("endpoints"):
            raise ConfigError(
                f"tier {data.get('name')!r} has no endpoints; give it at least one "
                "af.Endpoint(model=...)"
            )
        if fallback is not None:
            data["fallback"] = fallback
        super().__init__(**data)


class ModelZoo(_Model):
    """Tiers in escalation order, cheapest first (specialist < workhorse < heavy)."""

    tiers: list[Tier]
    default_tier: str | None = None

    def __init__(
        self, tiers: Sequence[Tier | Mapping[str, Any]] | None = None, **data: Any
    ) -> None:
        if tiers is not None:
            example = "tiers=[af.Tier('workhorse', endpoints=[...])]"
            data["tiers"] = [
                t if isinstance(t, Tier) else Tier(**dict(t))
                for t in _items(tiers, "tiers", Tier, example)
            ]
        if not data.get("tiers"):
            raise ConfigError(
                "the model zoo is empty; give it at least one tier: "
                "af.ModelZoo(tiers=[af.Tier('workhorse', endpoints=[af.Endpoint(model=...)])])"
            )
        super().__init__(**data)
        names = [t.name for t in self.tiers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(
                f"duplicate tier names {dupes}; each tier needs its own name "
                "(put replicas of one model in one tier's endpoints list)"
            )
        if "auto" in names:
            raise ConfigError(
                "a tier cannot be named 'auto': tier='auto' asks a router to pick a tier; "
                "rename that tier"
            )
        for t in self.tiers:
            if t.fallback is not None:
                if t.fallback == t.name:
                    raise ConfigError(
                        f"tier {t.name!r} names itself as fallback; name another tier or "
                        "leave fallback out"
                    )
                if t.fallback not in names:
                    raise UnknownTierError(t.fallback, names, where=f"fallback of tier {t.name!r}")
        if self.default_tier is not None and self.default_tier not in names:
            raise UnknownTierError(self.default_tier, names, where="default_tier")
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tiers})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tiers)

    def tier(self, name: str) -> Tier:
        by_name: dict[str, Tier] = self.__dict__.get("_by_name") or {t.name: t for t in self.tiers}
        try:
            return by_name[name]
        except KeyError:
            raise UnknownTierError(name, self.names) from None

    def check_tier(self, name: str) -> None:
        self.tier(name)

    def index(self, name: str) -> int:
        return self.names.index(self.tier(name).name)

    @property
    def default(self) -> Tier:
        """The tier used outside any step: ``default_tier``, else the cheapest."""
        return self.tier(self.default_tier) if self.default_tier else self.tiers[0]

    def endpoints(self) -> list[Endpoint]:
        return [e for t in self.tiers for e in t.endpoints]

    def token_prices(self) -> dict[str, TokenPricing]:
        """``{model name on spans: per-token price}`` for every priced endpoint.

        GPU-hour endpoints are converted to their effective per-token price; this is the
        mapping ``tracing.phoenix.register_pricing`` takes.
        """
        prices: dict[str, TokenPricing] = {}
        for e in self.endpoints():
            p = e.token_pricing()
            if p is not None:
                prices.setdefault(e.span_model, p)
        return prices

    @classmethod
    def from_toml(cls, path: str | Path) -> ModelZoo:
        """Load ``[[tiers]]`` (with ``[[tiers.endpoints]]``) from a TOML file."""
        return cls.from_dict(read_toml(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelZoo:
        return cls(tiers=data.get("tiers"), default_tier=data.get("default_tier"))
