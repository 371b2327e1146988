"""What a launch request names, found: the model checkpoint, the prepared dataset and the DeepSpeed JSON.

Each is checked here, before anything starts, so a wrong path is one clear error instead of a trainer's traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError
from finetune.frameworks.base import Framework
from finetune.paths import REPO_ROOT
from finetune.prepare.datasets import PreparedDataset, resolve_dataset
from finetune.recipes.models import all_models, get_model
from finetune.recipes.recipe import Recipe


def resolve_model(model: str | None, recipe: Recipe) -> str:
    """A local glm4_moe checkpoint folder (absolute), a hub id, or by default the recipe model's hub id. FP8
    checkpoints are refused: they serve, they do not train here."""
    if model is None:
        return get_model(recipe.meta.model).hf_id
    path = Path(model).expanduser()
    if path.exists():
        config = path / "config.json"
        if not config.is_file():
            raise FinetuneError(f"--model {model}: {config} is missing; point --model at a Hugging Face model folder.")
        data = json.loads(config.read_text())
        model_type = data.get("model_type")
        if model_type != "glm4_moe":
            raise FinetuneError(
                f"--model {model}: {config} says model_type `{model_type}`; these recipes train glm4_moe "
                "(GLM-4.5, GLM-4.5-Air, GLM-4.6, GLM-4.7) checkpoints."
            )
        quantization = data.get("quantization_config") or {}
        if "fp8" in str(quantization.get("quant_method", "")).lower():
            what = f"--model {model}: {config} holds FP8 weights (quantization_config quant_method fp8)"
            raise _fp8_refusal(what, get_model(recipe.meta.model).hf_id)
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise FinetuneError(f"--model {model}: no such folder.")
    fp8 = {spec.checkpoints.get("fp8"): spec for spec in all_models().values()}
    if model in fp8:
        raise _fp8_refusal(f"--model {model}: an FP8 checkpoint", fp8[model].hf_id)
    return model  # a hub id, resolved by the framework on the training nodes


def _fp8_refusal(what: str, bf16: str) -> FinetuneError:
    """Training starts from BF16 weights: LoRA (PEFT) on FP8 base weights and full SFT of FP8 weights are not
    supported by the pinned frameworks (LLaMA-Factory 0.9.5, ms-swift 4.6 with PEFT 0.18 / 0.20)."""
    return FinetuneError(
        f"{what}. The recipes train BF16 weights: LoRA on FP8 base weights (PEFT) and full fine-tuning of FP8 "
        f"weights are not supported by the pinned frameworks. Train the BF16 checkpoint instead (`--model {bf16}`, "
        "or its local copy); the FP8 checkpoint stays fine for serving (`finetune serve`, vLLM, SGLang)."
    )


def resolve_launch_dataset(
    name: str | None, recipe: Recipe, framework: Framework, config: dict[str, Any]
) -> PreparedDataset | None:
    """The prepared dataset to train on: --dataset, else the recipe's, unless the config names data itself."""
    if name is None and framework.has_dataset(config):
        return None
    return resolve_dataset(name or recipe.meta.dataset)


def thinking_history(config: dict[str, Any], dataset: PreparedDataset | None, recipe: Recipe) -> dict[str, Any]:
    """A dataset prepared with `--clear-thinking false` keeps earlier turns' reasoning in the context: both frameworks
    are told so (`preserve_thinking`), where the model's chat template can render it (GLM-4.7's `clear_thinking`)."""
    if dataset is None or dataset.manifest.options.clear_thinking:
        return config
    spec = get_model(recipe.meta.model)
    if "clear_thinking" not in spec.chat.template_kwargs:
        raise FinetuneError(
            f"Dataset `{dataset.name}` was prepared with --clear-thinking false (earlier reasoning kept in the "
            f"context), but {spec.display_name}'s chat template always clears it, so the model would be trained on "
            "contexts it is never served. Prepare the data without --clear-thinking false, or train a GLM-4.7 recipe."
        )
    return {**config, "preserve_thinking": True}


def resolve_deepspeed(value: str) -> Path:
    """A DeepSpeed JSON named relative to here or to the repository root."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / value).expanduser()
        if candidate.is_file():
            return candidate.resolve()
    raise FinetuneError(f"deepspeed: {value} not found (relative paths are read from here or the repository root).")
