"""The LoRA the recipes train, read from the TrainingSetup of the model's LLaMA-Factory LoRA recipe (rank, alpha,
targets), so the benchmark adapts exactly what a recipe run adapts."""

from __future__ import annotations

from dataclasses import dataclass

from finetune.errors import FinetuneError


@dataclass(frozen=True)
class RecipeLora:
    recipe_id: str
    rank: int
    alpha: int
    targets: tuple[str, ...]


def recipe_lora(model: str) -> RecipeLora:
    """The LoRA of the LLaMA-Factory LoRA recipe for `model` (the tiny slices use the same recipe's targets)."""
    from finetune.frameworks import get_framework
    from finetune.recipes.recipe import all_recipes

    for recipe in all_recipes():
        if recipe.framework == "llamafactory" and recipe.meta.model == model and recipe.meta.method == "lora":
            setup = get_framework(recipe.framework).recipe_setup(recipe)
            if setup.lora is not None:
                return RecipeLora(
                    recipe.id, setup.lora.rank, setup.lora_alpha or 2 * setup.lora.rank, setup.lora_targets
                )
    raise FinetuneError(f"No LLaMA-Factory LoRA recipe for `{model}` to take the LoRA targets from.")
