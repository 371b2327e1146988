"""`finetune.catalog` is the one list of choices: what it names exists, and everything that exists is named."""

from __future__ import annotations

import json
from pathlib import Path

import finetune.replica
from finetune import catalog
from finetune.glm.chat_formats import CHAT_FORMATS
from finetune.paths import MODELS_DIR, RECIPES_DIR
from finetune.planner.gpus import CATALOG
from finetune.recipes.models import ModelSpec, all_models
from finetune.recipes.recipe import RecipeMeta, all_recipes


def test_model_names_are_the_shipped_model_descriptions():
    assert set(catalog.MODELS) == {p.stem for p in MODELS_DIR.glob("*.json")} == set(all_models())
    assert catalog.DEFAULT_MODEL in catalog.MODELS


def test_chat_format_names_are_the_chat_formats_and_every_model_names_one():
    assert catalog.CHAT_FORMAT_NAMES == tuple(CHAT_FORMATS)
    assert all(name == fmt.name for name, fmt in CHAT_FORMATS.items())
    assert ModelSpec.model_fields["chat_format"].annotation.__args__ == catalog.CHAT_FORMAT_NAMES
    for path in sorted(MODELS_DIR.glob("*.json")):
        assert json.loads(path.read_text()).get("chat_format") in catalog.CHAT_FORMAT_NAMES, path.name
    replica_dir = Path(finetune.replica.__file__).parent  # each format's template, written from the format
    assert all((replica_dir / fmt.replica_template).is_file() for fmt in CHAT_FORMATS.values())


def test_gpu_kinds_all_have_planner_figures():
    assert set(catalog.GPUS) == set(CATALOG) and catalog.DEFAULT_GPU in catalog.GPUS
    assert all(CATALOG[key].name == name for key, name in catalog.GPUS.items())


def test_frameworks_are_the_recipe_folders():
    assert set(catalog.FRAMEWORKS) == {p.parent.name for p in RECIPES_DIR.glob("*/*.yaml")}


def test_recipe_schema_takes_its_choices_from_the_catalog():
    fields = RecipeMeta.model_fields
    for name, choices in (
        ("model", catalog.MODELS),
        ("method", catalog.METHODS),
        ("engine", catalog.ENGINES),
        ("gpu", tuple(catalog.GPUS)),
    ):
        assert fields[name].annotation.__args__ == choices, name
    assert {r.meta.method for r in all_recipes()} <= set(catalog.METHODS)
