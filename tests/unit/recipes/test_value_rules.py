"""Values the frameworks' parsers take but their trainers reject: refused by `validate` / `launch`, key and rule."""

from __future__ import annotations

import pytest

from finetune.frameworks import get_framework
from finetune.frameworks.value_rules import value_errors
from finetune.recipes.recipe import all_recipes
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("recipe", "setting", "says"),
    [
        ("llamafactory/glm45-air_lora_4xh100", "cutoff_len=-5", "--set cutoff_len=-5: cutoff_len must be > 0"),
        ("swift/glm45-air_lora_4xh100", "per_device_train_batch_size=0", "per_device_train_batch_size must be > 0"),
        ("swift/glm45-air_grpo_4xh100", "vllm_gpu_memory_utilization=1.5", "must be in (0, 1]"),
        ("llamafactory/glm45-air_lora_4xh100", "max_steps=-3", "max_steps must be > 0, or -1 for no limit"),
        ("swift/glm45-air_lora_4xh100", "lora_dropout=1.0", "lora_dropout must be in [0, 1)"),
    ],
)
def test_validate_refuses_values_the_trainer_would_reject(recipe, setting, says):
    out = run_cli("validate", recipe, "--set", setting)
    assert out.returncode == 2 and says in out.stderr and "trainer would reject" in out.stderr, out.stderr


def test_every_shipped_recipe_and_its_cpu_shrink_keep_the_rules():
    for recipe in all_recipes():
        shrunk = {**recipe.config, **get_framework(recipe.framework).cpu_smoke_overrides(6, recipe.meta)}
        assert value_errors(recipe.config) == [] and value_errors(shrunk) == [], recipe.id


def test_only_numbers_are_judged_here():
    assert value_errors({"max_steps": -1, "learning_rate": "fast", "seed": True, "cutoff_len": 0}) == [
        ("cutoff_len", 0, "must be > 0")
    ]
