"""What a stop needs: one step plus one checkpoint write, sized by the planner, and the Slurm lead that covers it."""

from __future__ import annotations

import re

import pytest

from finetune.planner import plan_recipe
from finetune.planner.checkpoint import STORAGE_GBPS
from finetune.recipes.recipe import all_recipes
from tests.conftest import REPO_ROOT


def test_checkpoint_sizes_follow_what_the_config_saves():
    lora = plan_recipe("swift/glm45-air_lora_4xh100")
    assert lora.stop.checkpoint_bytes == 16 * lora.trainable_params  # adapter + Adam (fp32 master, m, v)
    full = plan_recipe("swift/glm45-air_full_4xh100")
    assert full.stop.checkpoint_bytes == 14 * full.total_params  # bf16 model + fp32 master and moments
    model_only = plan_recipe("swift/glm45-air_full_4xh100", ["save_only_model=true"])
    assert model_only.stop.checkpoint_bytes == 2 * model_only.total_params
    assert full.stop.write_s == pytest.approx(14 * full.total_params / (STORAGE_GBPS * 1e9))  # one node writes
    low, high = full.throughput.tokens_per_s
    assert full.stop.step_s == pytest.approx((full.throughput.step_tokens / high, full.throughput.step_tokens / low))
    assert full.stop.lead_s == pytest.approx(full.stop.step_s[1] + full.stop.write_s)


def _sbatch_lead(name: str) -> int:
    text = (REPO_ROOT / "launch/slurm" / name).read_text()
    return int(re.search(r"^#SBATCH --signal=B:USR1@(\d+)$", text, re.M).group(1))


@pytest.mark.parametrize("recipe", all_recipes(), ids=lambda r: r.id)
def test_the_slurm_lead_covers_a_step_and_a_save_or_the_header_says_more(recipe):
    plan = plan_recipe(recipe)
    lead = _sbatch_lead("2node.sbatch" if plan.nodes > 1 else "1node.sbatch")
    offloaded_full = recipe.meta.method == "full" and plan.setup.deepspeed.offload_params
    if not plan.stop.graceful:  # Megatron-SWIFT: no stop hook, so no lead to cover; the header says so
        assert "no stop hook (Megatron-SWIFT)" in recipe.path.read_text()
    elif offloaded_full:  # the header names its own lead
        assert plan.stop.lead_s > lead and f"= {plan.stop.lead_s:,.0f} s between" in recipe.path.read_text().replace(
            "\n#           ", " "
        )
    else:
        assert plan.stop.lead_s <= lead, f"{recipe.id} needs {plan.stop.lead_s:,.0f} s; the sbatch lead is {lead}"
