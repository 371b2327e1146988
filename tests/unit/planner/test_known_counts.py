"""The parameter counts shipped for the recipes cover every recipe and equal a fresh count."""

from __future__ import annotations

import dataclasses

import pytest

from finetune.planner import params, plan_recipe
from finetune.recipes.recipe import all_recipes


def test_every_recipe_plans_from_the_shipped_counts(monkeypatch, tmp_path):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))  # an empty cache

    def no_torch(*args, **kwargs):
        raise AssertionError("counted from scratch: run refresh_known_counts() and commit known_counts.json")

    monkeypatch.setattr(params, "compute_counts", no_torch)
    for recipe in all_recipes():
        assert plan_recipe(recipe).total_params > 1e11


@pytest.mark.parametrize("key", sorted(params.known_counts())[:2])
def test_shipped_counts_equal_a_fresh_count(key, tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_CACHE", str(tmp_path))
    shipped = params.known_counts()[key]
    seen = {}
    original = params.compute_counts

    def record(config, spec):
        counts = original(config, spec)
        seen[params.cache_key(config, spec, params.library_versions())] = dataclasses.asdict(counts)
        return counts

    monkeypatch.setattr(params, "compute_counts", record)
    monkeypatch.setattr(params, "known_counts", lambda: {})
    for recipe in all_recipes():
        plan_recipe(recipe)
        if key in seen:
            break
    assert seen[key] == shipped
