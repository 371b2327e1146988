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
from finetune.recipes.models import get_model
from finetune.recipes.recipe import Recipe


def resolve_model(model: str | None, recipe: Recipe) -> str:
    """A local glm4_moe checkpoint folder (absolute), a hub id, or by default the recipe model's hub id."""
    if model is None:
        return get_model(recipe.meta.model).hf_id
    path = Path(model).expanduser()
    if path.exists():
        config = path / "config.json"
        if not config.is_file():
            raise FinetuneError(f"--model {model}: {config} is missing; point --model at a Hugging Face model folder.")
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type != "glm4_moe":
            raise FinetuneError(
                f"--model {model}: {config} says model_type `{model_type}`; these recipes train glm4_moe "
                "(GLM-4.5 / GLM-4.5-Air) checkpoints."
            )
        return str(path.resolve())
    if model.startswith((".", "/", "~")):
        raise FinetuneError(f"--model {model}: no such folder.")
    return model  # a hub id, resolved by the framework on the training nodes


def resolve_launch_dataset(
    name: str | None, recipe: Recipe, framework: Framework, config: dict[str, Any]
) -> PreparedDataset | None:
    """The prepared dataset to train on: --dataset, else the recipe's, unless the config names data itself."""
    if name is None and framework.has_dataset(config):
        return None
    return resolve_dataset(name or recipe.meta.dataset)


def resolve_deepspeed(value: str) -> Path:
    """A DeepSpeed JSON named relative to here or to the repository root."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = (base / value).expanduser()
        if candidate.is_file():
            return candidate.resolve()
    raise FinetuneError(f"deepspeed: {value} not found (relative paths are read from here or the repository root).")
