"""The model zoo and configuration: valid zoos, every bad input and its message, TOML.

Bad input fails at decoration or configure time with an ``af.AgentflowError`` whose
message says what was wrong and what to do.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import agentflow as af
from agentflow.testing import LoopbackServer, Reply
from budgets import GpuHourPricing, TokenPricing


def _calls(srv: LoopbackServer) -> list[Any]:
    """The model calls the server received (token counting asks ``/tokenize`` too)."""
    return [r for r in srv.requests if r.path.endswith(("/chat/completions", "/embeddings"))]


# words that tell the reader what to do next
_ADVICE = re.compile(r"\b(use|give|add|call|set|put|leave|fix|pass|e\.g\.)", re.IGNORECASE)


def _ep(model: str = "openai/m", **kw: Any) -> af.Endpoint:
    return af.Endpoint(model=model, **kw)


def _assert_helpful(err: BaseException) -> None:
    assert isinstance(err, af.AgentflowError)
    assert _ADVICE.search(str(err)), f"the message does not say what to do: {err}"


# -- a valid zoo -----------------------------------------------------------------------


def test_valid_zoo_keeps_order_replicas_fallback_and_default() -> None:
    zoo = af.ModelZoo(
        tiers=[
            af.Tier("specialist", endpoints=[_ep("openai/a", api_base="http://h:1/v1/")]),
            af.Tier(
                "workhorse",
                endpoints=[_ep("openai/b", name="b1"), _ep("openai/b", name="b2")],
                fallback="specialist",
            ),
            af.Tier("heavy", endpoints=[{"model": "gpt-4o"}]),  # a mapping is an Endpoint too
        ]
    )

    assert zoo.names == ("specialist", "workhorse", "heavy")
    assert zoo.default.name == "specialist"  # the cheapest, when no default_tier
    assert zoo.index("heavy") == 2
    assert [e.id for e in zoo.tier("workhorse").endpoints] == ["b1", "b2"]
    assert zoo.tier("workhorse").fallback == "specialist"
    assert zoo.tier("heavy").endpoints[0].model == "gpt-4o"
    specialist = zoo.tier("specialist").endpoints[0]
    assert specialist.api_base == "http://h:1/v1"  # the trailing slash is dropped
    assert specialist.id == "openai/a@http://h:1/v1"
    assert specialist.span_model == "a"  # litellm's provider prefix is not the model
    assert len(zoo.endpoints()) == 4

    cfg = af.configure(zoo=zoo)
    assert af.get_config() is cfg
    assert cfg.zoo is zoo


def test_default_tier_is_validated_and_used() -> None:
    zoo = af.ModelZoo(
        tiers=[af.Tier("a", endpoints=[_ep()]), af.Tier("b", endpoints=[_ep()])], default_tier="b"
    )
    assert zoo.default.name == "b"
    with pytest.raises(af.UnknownTierError, match=r"'c'.*'a', 'b'"):
        af.ModelZoo(
            tiers=[af.Tier("a", endpoints=[_ep()]), af.Tier("b", endpoints=[_ep()])],
            default_tier="c",
        )


def test_endpoint_passes_extra_litellm_params_through() -> None:
    e = _ep("openai/m", api_base="http://h:1/v1", extra_headers={"X-Tenant": "t1"}, timeout=3)
    params = e.litellm_params()
    assert params["extra_headers"] == {"X-Tenant": "t1"}
    assert params["timeout"] == 3
    assert params["api_base"] == "http://h:1/v1"
    assert params["model"] == "openai/m"


# -- bad input -------------------------------------------------------------------------


def test_unknown_tier_at_decoration_time_lists_the_valid_tiers() -> None:
    af.configure(
        zoo=af.ModelZoo(
            tiers=[af.Tier("small", endpoints=[_ep()]), af.Tier("big", endpoints=[_ep()])]
        )
    )
    with pytest.raises(af.UnknownTierError) as info:

        @af.plan(tier="medium")
        def make_plan() -> None: ...

    msg = str(info.value)
    assert "'medium'" in msg
    assert "'small'" in msg
    assert "'big'" in msg
    assert "make_plan" in msg  # which step
    assert info.value.valid == ("small", "big")
    _assert_helpful(info.value)


def test_unknown_escalation_tier_at_decoration_time() -> None:
    af.configure(zoo=af.ModelZoo(tiers=[af.Tier("small", endpoints=[_ep()])]))
    with pytest.raises(af.UnknownTierError, match=r"'huge'.*'small'"):

        @af.verify(tier="small", escalate=af.Escalate(up_to="huge"))
        def check() -> None: ...


def test_unknown_tier_at_configure_time_names_the_step() -> None:
    @af.tool(tier="gpu-box")
    def search(query: str) -> str:
        return query

    zoo = af.ModelZoo(tiers=[af.Tier("small", endpoints=[_ep()])])
    with pytest.raises(af.UnknownTierError) as info:
        af.configure(zoo=zoo)

    msg = str(info.value)
    assert "search" in msg, msg  # the step that named the tier
    assert "'gpu-box'" in msg
    assert "'small'" in msg
    _assert_helpful(info.value)
    # the bad zoo was not installed
    assert af.get_config().zoo is None


def test_empty_zoo() -> None:
    with pytest.raises(af.ConfigError, match="empty") as info:
        af.ModelZoo(tiers=[])
    _assert_helpful(info.value)
    with pytest.raises(af.ConfigError):
        af.ModelZoo()


def test_tier_without_endpoints() -> None:
    with pytest.raises(af.ConfigError, match="no endpoints") as info:
        af.Tier("small", endpoints=[])
    _assert_helpful(info.value)


def test_duplicate_tier_names() -> None:
    with pytest.raises(af.ConfigError, match="duplicate") as info:
        af.ModelZoo(tiers=[af.Tier("a", endpoints=[_ep()]), af.Tier("a", endpoints=[_ep()])])
    assert "'a'" in str(info.value)
    _assert_helpful(info.value)


@pytest.mark.parametrize("model", [None, ""])
def test_endpoint_without_model(model: str | None) -> None:
    kwargs = {} if model is None else {"model": model}
    with pytest.raises(af.ConfigError, match="model") as info:
        af.Endpoint(**kwargs)
    _assert_helpful(info.value)


def test_negative_price_in_a_pricing_dict() -> None:
    with pytest.raises(af.ConfigError) as info:
        af.Endpoint(
            model="openai/m",
            pricing={"kind": "token", "input_per_mtok": -1, "output_per_mtok": 2},
        )
    msg = str(info.value)
    assert "input_per_mtok" in msg
    assert "-1" in msg
    _assert_helpful(info.value)


def test_negative_gpu_hour_price_in_a_pricing_dict() -> None:
    with pytest.raises(af.ConfigError, match="usd_per_gpu_hour"):
        af.Endpoint(
            model="openai/m",
            pricing={
                "kind": "gpu_hour",
                "usd_per_gpu_hour": -0.5,
                "prompt_tokens_per_s": 100,
                "output_tokens_per_s": 10,
            },
        )


def test_unknown_step_kind() -> None:
    with pytest.raises(af.UnknownStepKindError) as info:

        @af.step(kind="planing")
        def plan_it() -> None: ...

    msg = str(info.value)
    assert "'planing'" in msg
    for kind in ("planning", "retrieval", "tool", "verification", "generic"):
        assert repr(kind) in msg
    assert isinstance(info.value, af.ConfigError)
    assert isinstance(info.value, af.AgentflowError)


def test_preset_decorators_refuse_a_kind() -> None:
    with pytest.raises(af.ConfigError, match=r"af\.step"):
        af.plan(kind="tool")  # type: ignore[call-overload]


def test_fallback_naming_a_missing_tier() -> None:
    with pytest.raises(af.UnknownTierError) as info:
        af.ModelZoo(tiers=[af.Tier("small", endpoints=[_ep()], fallback="bigger")])
    msg = str(info.value)
    assert "'bigger'" in msg
    assert "'small'" in msg
    # the reader must learn where the bad name is: the fallback of tier 'small'
    assert "fallback" in msg, msg
    _assert_helpful(info.value)


def test_fallback_naming_itself() -> None:
    with pytest.raises(af.ConfigError, match="fallback"):
        af.ModelZoo(tiers=[af.Tier("small", endpoints=[_ep()], fallback="small")])


def test_complete_before_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFLOW_CONFIG", raising=False)
    with pytest.raises(af.NotConfiguredError) as info:
        af.complete(messages=[{"role": "user", "content": "hi"}])
    assert "af.configure" in str(info.value)
    _assert_helpful(info.value)
    with pytest.raises(af.NotConfiguredError):
        af.embed("hi")


async def test_acomplete_before_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTFLOW_CONFIG", raising=False)
    with pytest.raises(af.NotConfiguredError):
        await af.acomplete(messages=[{"role": "user", "content": "hi"}])


def test_configure_rejects_both_zoo_and_path(tmp_path: Path) -> None:
    zoo = af.ModelZoo(tiers=[af.Tier("a", endpoints=[_ep()])])
    with pytest.raises(af.ConfigError, match="not both"):
        af.configure(zoo=zoo, path=tmp_path / "x.toml")
    with pytest.raises(af.ConfigError, match="ModelZoo"):
        af.configure(zoo={"tiers": []})  # type: ignore[arg-type]


def test_bad_policies_fail_at_decoration_time() -> None:
    with pytest.raises(af.ConfigError, match="min_confidence"):
        af.Escalate(min_confidence=1.5)
    with pytest.raises(af.ConfigError, match="scorer"):
        af.Escalate(scorer="vibes")
    with pytest.raises(af.ConfigError, match="cache"):

        @af.step(cache="fuzzy")
        def cached() -> None: ...

    with pytest.raises(af.ConfigError, match="max_attempts"):
        af.RetryPolicy(max_attempts=0)


# -- TOML ------------------------------------------------------------------------------

TOML = """
[agentflow]
cache_dir = "{cache}"
default_tier = "small"

[[agentflow.tiers]]
name = "small"

[[agentflow.tiers.endpoints]]
model = "openai/small-model"
api_base = "{base}"
timeout = 5

[agentflow.tiers.endpoints.pricing]
kind = "gpu_hour"
usd_per_gpu_hour = "1.10"
gpus = 1
prompt_tokens_per_s = 9000
output_tokens_per_s = 350

[[agentflow.tiers]]
name = "big"
fallback = "small"

[[agentflow.tiers.endpoints]]
model = "openai/big-model"
api_base = "{base}"

[agentflow.tiers.endpoints.pricing]
kind = "token"
input_per_mtok = 2.5
cached_input_per_mtok = 1.25
output_per_mtok = 10
"""


def _write_toml(tmp_path: Path, srv: LoopbackServer) -> Path:
    path = tmp_path / "agentflow.toml"
    path.write_text(TOML.format(cache=tmp_path / "cache", base=srv.base_url))
    return path


def _check_loaded(zoo: af.ModelZoo | None, tmp_path: Path, srv: LoopbackServer) -> None:
    assert zoo is not None
    assert zoo.names == ("small", "big")
    assert zoo.default.name == "small"
    assert zoo.tier("big").fallback == "small"
    small = zoo.tier("small").endpoints[0]
    assert isinstance(small.pricing, GpuHourPricing)
    assert small.pricing.usd_per_gpu_hour == Decimal("1.10")
    assert small.api_base == srv.base_url
    assert small.timeout == 5
    big = zoo.tier("big").endpoints[0]
    assert isinstance(big.pricing, TokenPricing)
    assert big.pricing.cached_input_per_mtok == Decimal("1.25")


def test_configure_from_a_toml_path(tmp_path: Path, srv: LoopbackServer) -> None:
    path = _write_toml(tmp_path, srv)
    cfg = af.configure(path=path)
    _check_loaded(cfg.zoo, tmp_path, srv)
    assert cfg.cache_dir == tmp_path / "cache"

    srv.script(Reply("from toml", prompt_tokens=9000, completion_tokens=350))
    c = af.complete(messages=[{"role": "user", "content": "hi"}])
    assert c.text == "from toml"
    assert c.tier == "small"
    assert _calls(srv)[-1].body["model"] == "small-model"
    # one second of prefill and one of decoding on a $1.10/h GPU
    assert c.cost.input_usd == Decimal("1.10") / 3600
    assert c.cost.output_usd == Decimal("1.10") / 3600


def test_configure_from_agentflow_config_env(
    tmp_path: Path, srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_CONFIG", str(_write_toml(tmp_path, srv)))
    # no configure() call: the first use loads the file
    srv.script(Reply("from env"))
    c = af.complete(messages=[{"role": "user", "content": "hi"}])
    assert c.text == "from env"
    _check_loaded(af.get_config().zoo, tmp_path, srv)


def test_explicit_configure_wins_over_agentflow_config_env(
    tmp_path: Path, srv: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_CONFIG", str(_write_toml(tmp_path, srv)))
    explicit = af.ModelZoo(tiers=[af.Tier("only", endpoints=[_ep()])])
    af.configure(zoo=explicit)
    assert af.get_config().zoo is explicit


def test_agentflow_config_env_pointing_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(af.ConfigError, match=r"missing\.toml"):
        af.complete(messages=[{"role": "user", "content": "hi"}])


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[agentflow\ntiers = 3")
    with pytest.raises(af.ConfigError, match="not valid TOML"):
        af.configure(path=path)


def test_toml_with_a_negative_price(tmp_path: Path) -> None:
    path = tmp_path / "neg.toml"
    path.write_text(
        "[[tiers]]\nname = 'a'\n[[tiers.endpoints]]\nmodel = 'openai/m'\n"
        "[tiers.endpoints.pricing]\nkind = 'token'\ninput_per_mtok = 1\noutput_per_mtok = -3\n"
    )
    with pytest.raises(af.ConfigError, match="output_per_mtok"):
        af.configure(path=path)


def test_cache_dir_env_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTFLOW_CACHE_DIR", str(tmp_path / "env"))
    assert af.Config().cache_dir == tmp_path / "env"
    zoo = af.ModelZoo(tiers=[af.Tier("a", endpoints=[_ep()])])
    assert af.configure(zoo=zoo).cache_dir == tmp_path / "env"
    assert af.configure(cache_dir=tmp_path / "arg").cache_dir == tmp_path / "arg"
    assert af.get_config().zoo is zoo  # configure() updates, it does not forget the zoo


# -- prices and secrets ------------------------------------------------------------------


def test_token_prices_converts_gpu_hour_pricing_to_per_token() -> None:
    gpu = GpuHourPricing(
        usd_per_gpu_hour=Decimal("1.10"), gpus=2, prompt_tokens_per_s=9000, output_tokens_per_s=350
    )
    api = TokenPricing(input_per_mtok=2.5, cached_input_per_mtok=1.25, output_per_mtok=10)
    zoo = af.ModelZoo(
        tiers=[
            af.Tier("specialist", endpoints=[_ep("openai/smollm2-135m", pricing=gpu)]),
            af.Tier("unpriced", endpoints=[_ep("openai/free")]),
            af.Tier("heavy", endpoints=[_ep("gpt-4o", pricing=api)]),
        ]
    )
    prices = zoo.token_prices()

    assert set(prices) == {"smollm2-135m", "gpt-4o"}  # names as on spans; unpriced left out
    assert prices["gpt-4o"] == api
    per_token = prices["smollm2-135m"]
    assert isinstance(per_token, TokenPricing)
    gpu_usd_per_s = Decimal("1.10") * 2 / 3600
    # a million output tokens take 1e6 / 350 s of two GPUs
    assert abs(per_token.output_per_mtok - gpu_usd_per_s * Decimal(1_000_000) / 350) < Decimal(
        "1e-20"
    )
    assert abs(per_token.input_per_mtok - gpu_usd_per_s * Decimal(1_000_000) / 9000) < Decimal(
        "1e-20"
    )
    assert per_token.cached_input_per_mtok == 0  # cached tokens skip prefill
    # the per-token price gives the same cost as the GPU-hour pricing
    from budgets import Usage

    usage = Usage(prompt_tokens=9000, cached_prompt_tokens=0, completion_tokens=350)
    assert abs(per_token.cost(usage).total_usd - gpu.cost(usage).total_usd) < Decimal("1e-20")


def test_api_key_never_in_repr(api_key: str) -> None:
    e = af.Endpoint(model="openai/m", api_base="http://127.0.0.1:1/v1", api_key=api_key)
    zoo = af.ModelZoo(tiers=[af.Tier("a", endpoints=[e])])
    for text in (
        repr(e),
        str(e),
        e.id,
        repr(zoo),
        str(zoo),
        e.model_dump_json(),
        repr(e.model_dump()),
        repr(af.configure(zoo=zoo)),
    ):
        assert api_key not in text
    # ...but litellm gets it
    assert e.litellm_params()["api_key"] == api_key


def test_escalation_ceiling_below_the_steps_tier() -> None:
    af.configure(
        zoo=af.ModelZoo(
            tiers=[af.Tier("small", endpoints=[_ep()]), af.Tier("big", endpoints=[_ep()])]
        )
    )
    with pytest.raises(af.ConfigError, match="up_to") as info:

        @af.verify(tier="big", escalate=af.Escalate(up_to="small"))
        def check() -> None: ...

    assert "check" in str(info.value)


def test_unknown_tier_for_one_call(srv: LoopbackServer, zoo: af.ModelZoo) -> None:
    with pytest.raises(af.UnknownTierError, match=r"'huge'.*'small', 'big'"):
        af.complete(messages=[{"role": "user", "content": "hi"}], tier="huge")
    assert srv.requests == []


def test_pricing_dict_without_a_kind() -> None:
    """A pricing table without ``kind`` is per-token pricing, or a message naming the kinds."""
    try:
        e = af.Endpoint(model="openai/m", pricing={"input_per_mtok": 1, "output_per_mtok": 2})
    except af.ConfigError as err:
        msg = str(err)
        assert "'token'" in msg or '"token"' in msg, msg
        assert "gpu_hour" in msg, msg
    else:
        assert isinstance(e.pricing, TokenPricing)
