"""The matrix-factorisation router, the learned routers' default embedder, and the
embedding cache: what they learn, how they decide, and that they survive a save/load."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import agentflow as af
from agentflow.cli import main
from agentflow.routing import (
    CachedEmbedder,
    HashingEmbedder,
    KnnRouter,
    LogisticRouter,
    MfRouter,
    Outcomes,
    default_embedder,
    load_router,
    train_router,
)
from agentflow.routing import _embed as embed_module
from agentflow.routing._mf import _gradients, _logits

TIERS = ("small", "big")


def _outcomes(n: int = 120) -> Outcomes:
    """Arithmetic only the big tier gets right, look-ups both get right."""
    prompts, correct = [], []
    for i in range(n):
        if i % 2:
            prompts.append(f"What is {i} plus {i * 3 % 17}?")
            correct.append([False, True])
        else:
            prompts.append(f"Which city is the capital of country number {i}?")
            correct.append([True, True])
    c = np.array(correct)
    return Outcomes(
        tuple(prompts), TIERS, c, np.tile([1.0, 10.0], (n, 1)), np.full(c.shape, np.nan)
    )


# -- the MF router ---------------------------------------------------------------------


def test_the_mf_gradient_matches_finite_differences() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(9, 6))
    y = (rng.random((9, 2)) < 0.5).astype(float)
    params = {"W": rng.normal(size=(3, 6)), "v": rng.normal(size=(2, 3)), "w": rng.normal(size=3)}
    params["b"] = rng.normal(size=2)
    l2 = 0.05

    def loss() -> float:
        z = _logits(params["W"], params["v"], params["w"], params["b"], x)
        data = float((np.logaddexp(0.0, z) - y * z).sum() / len(x))
        return data + l2 / 2 * sum(float((params[k] ** 2).sum()) for k in ("W", "v", "w"))

    grads = _gradients(params, x, y, l2)
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            keep = value[index]
            value[index] = keep + 1e-6
            up = loss()
            value[index] = keep - 1e-6
            down = loss()
            value[index] = keep
            numeric[index] = (up - down) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-7, err_msg=name)


def test_the_mf_router_learns_which_prompts_need_the_big_tier() -> None:
    router = train_router(_outcomes(), "mf", embedder=HashingEmbedder(dim=256))
    assert isinstance(router, MfRouter)
    p = router.predict(["What is 5 plus 8?", "Which city is the capital of country number 7?"])
    assert p[0, 0] < 0.5 < p[0, 1]  # arithmetic: the small tier fails, the big one does not
    assert p[1, 0] > 0.8
    assert router.pick(["What is 5 plus 8?", "Which city is the capital of country number 7?"]) == [
        "big",
        "small",
    ]


def test_mf_training_is_deterministic_and_seeded() -> None:
    embedder = HashingEmbedder(dim=128)
    first = MfRouter.train(_outcomes(), embedder=embedder, seed=4)
    again = MfRouter.train(_outcomes(), embedder=embedder, seed=4)
    other = MfRouter.train(_outcomes(), embedder=embedder, seed=5)
    assert np.array_equal(first.projection, again.projection)
    assert np.array_equal(first.tier_vectors, again.tier_vectors)
    assert not np.array_equal(first.projection, other.projection)


def test_an_mf_router_file_round_trips(tmp_path: Path) -> None:
    router = MfRouter.train(_outcomes(), embedder=HashingEmbedder(dim=64), latent=4, steps=50)
    router.save(tmp_path / "mf.json")
    loaded = load_router(tmp_path / "mf.json")
    assert isinstance(loaded, MfRouter)
    assert isinstance(loaded.embedder, HashingEmbedder)
    assert loaded.embedder.dim == 64
    texts = ["What is 2 plus 2?", "Which city is the capital of country number 3?"]
    np.testing.assert_allclose(loaded.predict(texts), router.predict(texts), atol=1e-6)
    assert (loaded.rule, loaded.threshold, loaded.tiers) == (router.rule, router.threshold, TIERS)
    assert json.loads((tmp_path / "mf.json").read_text())["kind"] == "mf"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"latent": 0}, "latent=0"), ({"steps": 0}, "steps >= 1"), ({"l2": -1.0}, "l2 >= 0")],
)
def test_bad_mf_settings_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(af.ConfigError, match=message):
        MfRouter.train(_outcomes(), embedder=HashingEmbedder(dim=32), **options)  # type: ignore[arg-type]


def test_an_mf_router_refuses_vectors_of_another_size() -> None:
    router = MfRouter.train(_outcomes(), embedder=HashingEmbedder(dim=64), steps=5)
    router.embedder = HashingEmbedder(dim=32)
    with pytest.raises(af.ConfigError, match="32-dimensional vectors"):
        router.predict(["hi"])


def test_route_train_kind_mf_writes_a_loadable_router(hand_made: Path, tmp_path: Path) -> None:
    out = tmp_path / "mf.json"
    assert main(["route", "train", "--data", str(hand_made), "--out", str(out), "--kind", "mf",
                 "--embedder", "hashing"]) == 0  # fmt: skip
    loaded = load_router(out)
    assert isinstance(loaded, MfRouter)
    assert isinstance(loaded.embedder, HashingEmbedder)


# -- the default embedder --------------------------------------------------------------


def test_learned_routers_default_to_the_local_embedder_when_it_is_installed() -> None:
    assert embed_module.local_embedder_installed()  # the test environment has the extra
    assert isinstance(default_embedder(), af.LocalEmbedder)
    for kind in ("knn", "logistic", "mf"):
        router = train_router(_outcomes(40), kind)
        assert isinstance(router.embedder, af.LocalEmbedder), kind
    assert isinstance(KnnRouter(TIERS, np.eye(2), np.eye(2)).embedder, af.LocalEmbedder)


def test_without_the_embed_extra_the_default_is_the_hashing_embedder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embed_module, "local_embedder_installed", lambda: False)
    assert isinstance(default_embedder(), HashingEmbedder)
    assert isinstance(train_router(_outcomes(40), "logistic").embedder, HashingEmbedder)


@pytest.mark.parametrize("kind", ["knn", "logistic", "mf"])
def test_a_saved_router_comes_back_with_its_embedder(kind: str, tmp_path: Path) -> None:
    local = train_router(_outcomes(40), kind)
    local.save(tmp_path / "local.json")
    back = load_router(tmp_path / "local.json")
    assert isinstance(back, KnnRouter | LogisticRouter | MfRouter)
    assert isinstance(back.embedder, af.LocalEmbedder)
    texts = ["What is 4 plus 4?"]
    np.testing.assert_allclose(back.predict(texts), local.predict(texts), atol=1e-5)

    hashed = train_router(_outcomes(40), kind, embedder=HashingEmbedder(dim=96))
    hashed.save(tmp_path / "hashing.json")
    again = load_router(tmp_path / "hashing.json")
    assert isinstance(again, KnnRouter | LogisticRouter | MfRouter)
    assert isinstance(again.embedder, HashingEmbedder)
    assert again.embedder.dim == 96


def test_importing_the_routers_does_not_load_onnx_runtime() -> None:
    code = (
        "import sys, agentflow, agentflow.routing as r; "
        "e = r.default_embedder(); "
        "assert type(e).__name__ == 'LocalEmbedder', e; "
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime loaded'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


# -- the embedding cache ---------------------------------------------------------------


class _Counting:
    """HashingEmbedder that counts the texts it embeds."""

    def __init__(self) -> None:
        self.inner = HashingEmbedder(dim=64)
        self.embedded = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return self.inner(texts)

    def router_dict(self) -> dict[str, object]:
        return self.inner.to_dict()


def test_the_cache_embeds_each_text_once_across_runs(tmp_path: Path) -> None:
    counting = _Counting()
    cached = CachedEmbedder(counting, tmp_path)
    texts = ["a b c", "d e f", "a b c"]
    first = cached(texts)
    assert counting.embedded == 2
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    again = CachedEmbedder(counting, tmp_path)(["d e f", "a b c", "g h"])
    assert counting.embedded == 3  # only "g h" is new
    exact = HashingEmbedder(dim=64)(["a b c", "d e f"])
    np.testing.assert_allclose(first[:2], exact, atol=0.01)  # int8, a scale per vector
    assert float(first[0] @ exact[0]) > 0.9999
    np.testing.assert_array_equal(again[1], first[0])


def test_a_router_trained_through_the_cache_saves_the_inner_embedder(tmp_path: Path) -> None:
    router = train_router(_outcomes(), "knn", embedder=CachedEmbedder(HashingEmbedder(), tmp_path))
    router.save(tmp_path / "router.json")
    loaded = load_router(tmp_path / "router.json")
    assert isinstance(loaded, KnnRouter)
    assert isinstance(loaded.embedder, HashingEmbedder)


def test_the_cache_refuses_an_embedder_it_cannot_name(tmp_path: Path) -> None:
    with pytest.raises(af.ConfigError, match="an embedder it can name"):
        CachedEmbedder(lambda texts: np.ones((len(texts), 3)), tmp_path)


def test_a_broken_cache_file_is_named(tmp_path: Path) -> None:
    cached = CachedEmbedder(HashingEmbedder(), tmp_path)
    cached.path.write_bytes(b"not a numpy file")
    with pytest.raises(af.ConfigError, match="not an embedding cache"):
        cached(["hi"])


def test_route_eval_draws_one_curve_per_kind(
    hand_made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["route", "eval", "--data", str(hand_made), "--embedder", "hashing", "--folds", "2"]
    assert main([*args, "--kind", "knn,mf", "--json", "--resamples", "0"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)["policies"]]
    assert [n for n in names if n.startswith("router")] == [
        "router (knn, 2-fold)",
        "router (mf, 2-fold)",
    ]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--kind", "knn,forest"])
    assert exit_info.value.code == 2
    assert "--kind takes knn, logistic, mf" in capsys.readouterr().err


def test_a_damaged_embedding_cache_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from agentflow.routing import CachedEmbedder, HashingEmbedder

    cache = CachedEmbedder(HashingEmbedder(), tmp_path)
    cache(["hello"])
    data = cache.path.read_bytes()
    cache.path.write_bytes(data[: len(data) // 2])  # a copy cut short
    with pytest.raises(af.ConfigError, match=r"is not an embedding cache.*delete it"):
        CachedEmbedder(HashingEmbedder(), tmp_path)(["hello"])
