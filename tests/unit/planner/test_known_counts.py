"""The parameter counts shipped for the recipes cover every recipe and equal a fresh count."""

from __future__ import annotations

import dataclasses

import pytest

from finetune.planner import params, plan_recipe, plan_setup
from finetune.recipes.models import all_models, get_model
from finetune.recipes.recipe import all_recipes


def test_every_recipe_plans_from_the_shipped_counts(monkeypatch, tmp_path):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))  # an empty cache

    def no_torch(*args, **kwargs):
        raise AssertionError("counted from scratch: run refresh_known_counts() and commit known_counts.json")

    monkeypatch.setattr(params, "compute_counts", no_torch)
    for recipe in all_recipes():
        assert plan_recipe(recipe).total_params > 1e11


def test_models_of_one_shape_plan_every_recipe_setup_from_the_shipped_counts(monkeypatch, tmp_path):
    """A model whose config differs from a recipe's model only in keys that size no parameter (GLM-4.6 and
    GLM-4.7 against GLM-4.5) plans that recipe's setup from the shipped counts, with its own context."""
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    monkeypatch.setattr(params, "compute_counts", lambda *a: pytest.fail("counted from scratch at plan time"))
    planned = set()
    for recipe in all_recipes():
        plan = plan_recipe(recipe)
        shaping = _shaping(get_model(recipe.meta.model).config)
        for spec in all_models().values():
            if spec.name == recipe.meta.model or _shaping(spec.config) != shaping:
                continue
            other = plan_setup(
                plan.setup, spec.config, nodes=plan.nodes, gpus_per_node=plan.gpus_per_node, gpu=plan.gpu.key
            )
            assert other.counts == plan.counts and other.context == spec.context >= other.max_seq_len
            planned.add(spec.name)
    assert {"glm-4.5", "glm-4.6", "glm-4.7"} <= planned


def _shaping(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in params.COUNT_NEUTRAL_KEYS}


@pytest.fixture(scope="module")
def fresh_counts(tmp_path_factory) -> dict[str, dict]:
    """Every recipe planned with the shipped counts hidden and an empty cache: each count is computed afresh on
    the meta device (a few seconds in all), keyed as the shipped ones are."""
    seen = {}
    original = params.compute_counts

    def record(config, spec):
        counts = original(config, spec)
        seen[params.cache_key(config, spec, params.library_versions())] = dataclasses.asdict(counts)
        return counts

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FINETUNE_CACHE", str(tmp_path_factory.mktemp("counts")))
        patch.setattr(params, "compute_counts", record)
        patch.setattr(params, "known_counts", lambda: {})
        for recipe in all_recipes():
            plan_recipe(recipe)
    return seen


@pytest.mark.parametrize("key", sorted(params.known_counts()))
def test_every_shipped_count_equals_a_fresh_count(key, fresh_counts):
    assert key in fresh_counts, "no recipe needs this count any more: run refresh_known_counts() and commit it"
    assert fresh_counts[key] == params.known_counts()[key]
