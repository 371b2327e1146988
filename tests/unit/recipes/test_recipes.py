"""Every recipe parses with its framework's own parser; every DeepSpeed JSON with DeepSpeed's config class."""

from __future__ import annotations

import json
import re

import pytest

from finetune.errors import FinetuneError
from finetune.frameworks.trainer.deepspeed_check import check_deepspeed
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.paths import DEEPSPEED_DIR
from finetune.planner.headers import render_header
from finetune.recipes.recipe import all_recipes, load_recipe_file, recipe_paths, resolve_recipe

RECIPE_IDS = [f"{p.parent.name}/{p.stem}" for p in recipe_paths()]
DEEPSPEED_FILES = sorted(DEEPSPEED_DIR.glob("*.json"))
# <model>_<method>[-experts]_..._<N>x<gpu>: `-experts` marks a LoRA that also adapts the routed experts
NAME = re.compile(
    r"^(?P<model>glm4\d(-air)?)_(?P<method>[a-z0-9]+)(?P<experts>-experts)?(_[a-z0-9]+)*_(?P<gpus>\d+)x(?P<gpu>[a-z0-9]+)$"
)


def test_catalog_is_not_empty():
    assert len(RECIPE_IDS) >= 2 and DEEPSPEED_FILES


@pytest.mark.parametrize("recipe_id", RECIPE_IDS)
def test_name_says_model_method_and_cluster(recipe_id):
    recipe = resolve_recipe(recipe_id)
    m = NAME.match(recipe.name)
    assert m, f"{recipe.path.name} does not read as <model>_<method>_<N>x<gpu>"
    assert m["model"] == recipe.meta.model.replace("glm-4.", "glm4")  # glm-4.5-air -> glm45-air
    assert m["method"] == recipe.meta.method
    assert bool(m["experts"]) == ("routed_experts" in (recipe.meta.lora_adapts or []))
    assert int(m["gpus"]) == recipe.meta.total_gpus
    assert recipe.meta.gpu.startswith(m["gpu"])


@pytest.mark.parametrize("recipe_id", RECIPE_IDS)
def test_header_is_generated_from_the_recipe(recipe_id):
    recipe = resolve_recipe(recipe_id)
    assert recipe.header == render_header(recipe), "run `python -m finetune recipes --sync-headers`"
    assert f"launch {recipe.id}" in recipe.header
    assert f"{recipe.meta.total_gpus} GPUs" in recipe.header


@pytest.mark.parametrize("path", DEEPSPEED_FILES, ids=lambda p: p.name)
def test_deepspeed_json_validates_with_deepspeed(path):
    assert check_deepspeed(json.loads(path.read_text())) == []


def test_deepspeed_rejects_bad_keys():
    config = json.loads((DEEPSPEED_DIR / "zero3.json").read_text())
    nested = json.loads(json.dumps(config))
    nested["zero_optimization"]["overlap_comms"] = True
    assert any("overlap_comms" in e for e in check_deepspeed(nested))
    config["zero_optimisation"] = {"stage": 3}
    assert check_deepspeed(config) == ["unknown top-level key `zero_optimisation` (DeepSpeed ignores it)"]


def _plan(air_replica, tmp_path, **kwargs):
    return plan_launch(
        LaunchRequest(
            recipe="llamafactory/glm45-air_lora_4xh100",
            model=str(air_replica),
            run_dir=tmp_path / "run",
            nnodes=1,
            nproc_per_node=1,
            **kwargs,
        )
    )


def test_unknown_dataset_is_rejected_with_a_suggestion(air_replica, tmp_path):
    with pytest.raises(FinetuneError, match="Did you mean `sample_chat`"):
        _plan(air_replica, tmp_path, dataset="sample_chta")


def test_unknown_finetune_key_is_rejected_with_a_suggestion(tmp_path):
    source = resolve_recipe("llamafactory/glm45-air_lora_4xh100").path
    target = tmp_path / "llamafactory" / source.name
    target.parent.mkdir()
    target.write_text(source.read_text().replace("  gpus_per_node: 4", "  gpus_per_nodes: 4"))
    with pytest.raises(FinetuneError) as err:
        load_recipe_file(target)
    assert str(target) in str(err.value) and "finetune.gpus_per_nodes" in str(err.value)
    assert "Did you mean `gpus_per_node`?" in str(err.value)


def test_the_llamafactory_only_target_parameters_key_is_refused_elsewhere(tmp_path):
    """`finetune.lora_target_parameters` reaches PEFT only through LLaMA-Factory's entry: in an ms-swift recipe it
    would be ignored without a word, so loading the recipe refuses it and names ms-swift's own key."""
    source = resolve_recipe("swift/glm45-air_lora_4xh100").path
    target = tmp_path / "swift" / source.name
    target.parent.mkdir()
    text = source.read_text().replace(
        "  lora_adapts: [attention]\n",
        "  lora_adapts: [attention]\n  lora_target_parameters: [mlp.experts.down_proj]\n",
    )
    target.write_text(text)
    with pytest.raises(FinetuneError, match=r"lora_target_parameters is for LLaMA-Factory.*`target_parameters`"):
        load_recipe_file(target)


def test_unknown_recipe_suggests_one():
    with pytest.raises(FinetuneError, match="Did you mean"):
        resolve_recipe("llamafactory/glm45-air_lora_4xh10")


def test_recipes_list_as_json():
    from tests.conftest import run_cli

    out = run_cli("recipes", "--json")
    assert out.returncode == 0, out.stderr
    rows = {row["id"]: row for row in json.loads(out.stdout)}
    assert set(rows) == {r.id for r in all_recipes()}
    air = rows["llamafactory/glm45-air_lora_4xh100"]
    assert (air["framework"], air["model"], air["method"], air["nodes"], air["gpus_per_node"], air["seq_len"]) == (
        "llamafactory",
        "glm-4.5-air",
        "lora",
        1,
        4,
        4096,
    )
