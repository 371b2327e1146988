"""The framework's own argument parser on the rendered config: unknown keys refused with a suggestion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finetune.errors import FinetuneError, suggest
from finetune.frameworks.base import Framework
from finetune.recipes.recipe import Recipe


def _unknown_key_message(recipe: Recipe, unknown: list[str], overrides: Mapping[str, Any], valid: list[str]) -> str:
    lines = []
    for key in unknown:
        where = f"--set {key}=..." if key in overrides else f"{recipe.path}: key `{key}`"
        lines.append(f"  {where}: {recipe.framework} has no argument `{key}`.{suggest(key, valid)}")
    return f"Unknown {recipe.framework} keys (checked with its own argument parser):\n" + "\n".join(lines)


def check_config(
    recipe: Recipe, framework: Framework, config: dict[str, Any], overrides: Mapping[str, Any]
) -> list[str]:
    """Raise on a value the trainer would reject (finetune/frameworks/value_rules.py) and on anything the
    framework's parser rejects; return its warnings."""
    from finetune.frameworks.value_rules import value_errors

    bad = value_errors(config)
    if bad:
        lines = []
        for key, value, rule in bad:
            where = f"--set {key}={value}" if key in overrides else f"{recipe.path}: key `{key}` ({value})"
            lines.append(f"  {where}: {key} {rule}")
        raise FinetuneError(f"{recipe.id}: values {recipe.framework}'s trainer would reject:\n" + "\n".join(lines))
    result = framework.check(config, recipe.meta)
    if result.unknown_keys:
        raise FinetuneError(_unknown_key_message(recipe, result.unknown_keys, overrides, result.valid_keys))
    if result.errors:
        raise FinetuneError(
            f"{recipe.id}: {framework.display_name} rejects the rendered config:\n"
            + "\n".join(f"  {e}" for e in result.errors)
        )
    return result.warnings
