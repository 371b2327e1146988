"""Every recipe, and overrides of it, through its framework's own argument parser (run in the framework's
environment: one slow import per framework for all recipes, then cached)."""

from __future__ import annotations

import json

import pytest

from finetune.errors import FinetuneError
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.paths import DEEPSPEED_DIR
from finetune.recipes.recipe import all_recipes
from tests.conftest import run_cli
from tests.unit.recipes.test_recipes import RECIPE_IDS, _plan


def _replica_request(recipe_id: str, replica) -> LaunchRequest:
    """What `validate --all --model REPLICA` plans for one recipe."""
    return LaunchRequest(recipe=recipe_id, model=str(replica))


@pytest.fixture(scope="module")
def validated_all(air_replica, tmp_path_factory):
    """`finetune validate --all` on the replica, in a cache of this module's own (so the check really runs): every
    recipe through its framework's parser. The tests below then plan each recipe from that cache."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("FINETUNE_CACHE", str(tmp_path_factory.mktemp("parser-cache")))
        yield run_cli("validate", "--all", "--model", str(air_replica), timeout=900)


def test_validate_all_checks_every_recipe_with_one_import_per_framework(validated_all, air_replica):
    assert validated_all.returncode == 0, validated_all.stderr[-3000:]
    for recipe in all_recipes():
        assert f"{recipe.id}: " in validated_all.stdout and "accepts the rendered config" in validated_all.stdout
    checking = [line for line in validated_all.stderr.splitlines() if line.startswith("checking ")]
    frameworks = {recipe.framework for recipe in all_recipes()}
    assert len(checking) == len(frameworks), checking  # one framework process each, for all of its recipes
    # recipes that render the same config on the replica (GLM-4.6's are GLM-4.5's but for the model id, replaced by
    # the replica's here) share one check: the count is that of distinct checks
    plans = [plan_launch(_replica_request(r, air_replica), check=False, preview=True) for r in RECIPE_IDS]
    distinct = {p.framework._check_key(dict(p.checked_config), p.recipe.meta) for p in plans}
    assert len(distinct) < len(RECIPE_IDS)  # the shared checks are really shared
    assert sum(int(line.split()[1]) for line in checking) == len(distinct), checking
    wrong = run_cli("validate", "--all", "--model", str(air_replica), "--dataset", "sample_chta")
    assert wrong.returncode == 1  # each recipe says why; none stops the others
    assert f"{len(RECIPE_IDS)} of {len(RECIPE_IDS)} recipes rejected." in wrong.stderr
    assert wrong.stderr.count("Did you mean `sample_chat`") == len(RECIPE_IDS), wrong.stderr[-3000:]


@pytest.mark.parametrize("recipe_id", RECIPE_IDS)
def test_recipe_parses_with_the_framework_parser(recipe_id, validated_all, air_replica, tmp_path):
    plan = plan_launch(
        LaunchRequest(recipe=recipe_id, model=str(air_replica), run_dir=tmp_path / "run", nnodes=1, nproc_per_node=1)
    )
    assert str(air_replica) in plan.config.values()
    assert not (tmp_path / "run").exists()  # planning writes nothing


def test_unknown_override_names_the_closest_key(air_replica, tmp_path):
    with pytest.raises(FinetuneError) as err:
        _plan(air_replica, tmp_path, overrides=["lora_rnak=8"])
    assert "--set lora_rnak=..." in str(err.value) and "Did you mean `lora_rank`?" in str(err.value)


def test_bad_override_value_is_rejected_by_the_parser(air_replica, tmp_path):
    with pytest.raises(FinetuneError, match="learning_rate.*invalid float value: 'fast'"):
        _plan(air_replica, tmp_path, overrides=["learning_rate=fast"])


def test_bad_deepspeed_override_is_rejected(air_replica, tmp_path):
    bad = tmp_path / "ds.json"
    config = json.loads((DEEPSPEED_DIR / "zero3.json").read_text())
    config["zero_optimization"]["stage3_prefetch_bucket"] = 1
    bad.write_text(json.dumps(config))
    with pytest.raises(FinetuneError, match="stage3_prefetch_bucket"):
        _plan(air_replica, tmp_path, overrides=[f"deepspeed={bad}"])


def test_a_first_check_says_what_it_is_doing(tmp_path):
    first = run_cli("validate", "llamafactory/glm45-air_lora_4xh100", env={"FINETUNE_CACHE": str(tmp_path / "c")})
    again = run_cli("validate", "llamafactory/glm45-air_lora_4xh100", env={"FINETUNE_CACHE": str(tmp_path / "c")})
    assert first.returncode == again.returncode == 0, first.stderr
    said = "checking the config with LLaMA-Factory's own argument parser (once per config; about 10 s)..."
    assert said in first.stderr and said not in again.stderr  # the second run reads the cached verdict
