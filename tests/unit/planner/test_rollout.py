"""A colocated vLLM must fit the share of the GPU it is given: the planner's rollout check against vLLM's own
arithmetic, for both GRPO recipes, and the launch gate that refuses what does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.errors import FinetuneError
from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.planner import check_fits, plan_recipe
from finetune.planner.gpus import get_gpu
from finetune.planner.memory import GIB
from finetune.recipes.models import get_model

GRPO = {"swift/glm45-air_grpo_4xh100": (4, 1), "swift/glm45_grpo_16xh100": (16, 2)}
# transformers' loaded totals (../shared/reference/glm45-architecture.md), without the MTP layer vLLM skips
LOADED_PARAMS = {"glm-4.5-air": 106.852e9, "glm-4.5": 352.798e9}


def _vllm_arithmetic(recipe_id: str, utilization: float) -> dict[str, float]:
    """What vLLM needs per GPU, worked out here from the model's config.json and the recipe's vLLM keys."""
    config = get_model(resolve_model(recipe_id)).config
    tp = plan_recipe(recipe_id).setup.rollout_tp
    kv_heads = max(1, config["num_key_value_heads"] // tp)
    return {
        "budget": utilization * get_gpu("h100-80gb").memory_gib,
        "weights": 2 * LOADED_PARAMS[resolve_model(recipe_id)] / tp / GIB,
        "kv_per_token_kib": 2 * config["num_hidden_layers"] * kv_heads * config["head_dim"] * 2 / 1024,
    }


def resolve_model(recipe_id: str) -> str:
    from finetune.recipes.recipe import resolve_recipe

    return resolve_recipe(recipe_id).meta.model


@pytest.mark.parametrize("recipe_id", list(GRPO))
def test_half_the_gpu_cannot_hold_vllms_weights(recipe_id):
    """The utilization the GRPO recipes once had: the trainer fits, vLLM does not, and the plan says so."""
    plan = plan_recipe(recipe_id, ["vllm_gpu_memory_utilization=0.5"])
    expected = _vllm_arithmetic(recipe_id, 0.5)
    rollout = plan.rollout
    assert rollout.budget / GIB == pytest.approx(expected["budget"], rel=1e-6)
    assert rollout.weights / GIB == pytest.approx(expected["weights"], rel=2e-3)
    assert rollout.kv_per_token / 1024 == pytest.approx(expected["kv_per_token_kib"])
    assert expected["weights"] > expected["budget"]  # the arithmetic alone: the weights exceed the share
    assert plan.trainer_fits and not plan.fits and not rollout.fits


@pytest.mark.parametrize("recipe_id", list(GRPO))
def test_the_shipped_grpo_recipes_fit_with_room_for_a_steps_sequences(recipe_id):
    plan = plan_recipe(recipe_id)
    rollout, (tp, _) = plan.rollout, GRPO[recipe_id]
    assert rollout.tp == tp and plan.fits
    expected = _vllm_arithmetic(recipe_id, rollout.utilization)
    room = expected["budget"] * GIB - expected["weights"] * GIB - rollout.overhead
    per_sequence = expected["kv_per_token_kib"] * 1024 * rollout.max_model_len
    assert rollout.sequences_at_once == min(rollout.sequences, int(room // per_sequence))
    assert rollout.sequences_at_once == rollout.sequences  # a step's rollouts generate together
    assert rollout.max_model_len == 3072  # prompt 1,024 + completion 2,048: vllm_max_model_len


def test_cli_names_the_rollout_verdict_and_what_utilization_it_needs():
    from tests.conftest import run_cli

    out = run_cli("plan", "swift/glm45-air_grpo_4xh100", "--set", "vllm_gpu_memory_utilization=0.5")
    assert "Verdict: DOES NOT FIT" in out.stdout and "the colocated vLLM does not fit its share" in out.stdout
    assert "needs vllm_gpu_memory_utilization >= 0.68" in " ".join(out.stdout.split())
    data = json.loads(run_cli("plan", "swift/glm45-air_grpo_4xh100", "--json").stdout)
    assert data["fits"] and data["rollout"]["fits"] and data["rollout"]["weights_gib"] == pytest.approx(49.76, abs=0.01)


def test_launch_refuses_a_rollout_that_does_not_fit(tmp_path: Path):
    launch = plan_launch(
        LaunchRequest(
            recipe="swift/glm45-air_grpo_4xh100",
            nnodes=1,
            nproc_per_node=4,
            run_dir=tmp_path / "run",
            overrides=["vllm_gpu_memory_utilization=0.5"],
        ),
        check=False,
    )
    with pytest.raises(
        FinetuneError, match=r"the trainer does .* but its colocated rollout engine does not: vLLM 39.5"
    ):
        check_fits(launch)
