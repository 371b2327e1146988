"""The LoRA the recipes train, read from the LLaMA-Factory LoRA recipe of the model (rank, alpha, targets), so the
benchmark adapts exactly what a recipe run adapts."""

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
    from finetune.recipes.recipe import all_recipes

    for recipe in all_recipes():
        if recipe.framework == "llamafactory" and recipe.meta.model == model and recipe.meta.method == "lora":
            config = recipe.config
            targets = config.get("lora_target", "all")
            targets = targets if isinstance(targets, list) else str(targets).split(",")
            return RecipeLora(
                recipe_id=recipe.id,
                rank=int(config.get("lora_rank", 8)),
                alpha=int(config.get("lora_alpha", 2 * int(config.get("lora_rank", 8)))),
                targets=tuple(t.strip() for t in targets if t.strip()),
            )
    raise FinetuneError(f"No LLaMA-Factory LoRA recipe for `{model}` to take the LoRA targets from.")
