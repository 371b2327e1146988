"""LoRA on the routed experts, trained for real through `finetune launch` under the recipes' own ZeRO-3: the
expert adapters exist, move, and are the only new trainable tensors besides attention (and the MLPs where the
recipe says so). What the adapters adapt is checked against the headers by test_lora_targets.py (LLaMA-Factory)
and test_swift.py (ms-swift); serving them is test_expert_serving.py's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from safetensors.torch import load_file

from finetune.frameworks import get_framework
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from tests.conftest import run_cli
from tests.helpers.nodes import one_node

pytestmark = pytest.mark.train

RECIPES = ["swift/glm45-air_lora-experts_8xh100", "llamafactory/glm45-air_lora-experts_8xh100"]
STEPS = 3
EXPERT_KEY = re.compile(r"\.mlp\.experts\.(base_layer\.)?lora_[AB]\.weight$")  # PEFT's keys for the fused experts


def _adapter(framework: str, run_dir: Path) -> dict:
    weights = get_framework(framework).trained_weights(run_dir / "output", {})
    return load_file(weights / "adapter_model.safetensors")


@pytest.mark.parametrize("recipe_id", RECIPES)
def test_a_short_run_moves_the_expert_adapters(recipe_id, air_replica, tmp_path):
    """Three steps of the recipe, shrunk to the replica on one process with its ZeRO-3 config (the expert tensors
    are partitioned when PEFT wraps them: the trainer entry gathers them): every MoE layer gets its gate_up and
    down adapters, and their B factors, zero at the start, are not zero after training."""
    recipe = resolve_recipe(recipe_id)
    framework = get_framework(recipe.framework)
    overrides = framework.cpu_smoke_overrides(STEPS, recipe.meta)
    sets = [a for k, v in overrides.items() for a in ("--set", format_override(k, v))]
    run_dir = tmp_path / "run"
    args = [recipe_id, "--model", str(air_replica), "--run-dir", str(run_dir), *one_node(), *sets]
    out = run_cli("launch", *args, env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    tensors = _adapter(recipe.framework, run_dir)
    experts = {k: v for k, v in tensors.items() if EXPERT_KEY.search(k)}
    moe_layers = {int(re.search(r"layers\.(\d+)\.", k)[1]) for k in experts}
    assert moe_layers == {1, 2}, sorted(experts)  # the replica's MoE layers (its first layer is dense)
    assert len(experts) == 2 * 2 * len(moe_layers)  # gate_up and down, A and B each
    moved = {k: float(v.abs().max()) for k, v in experts.items() if ".lora_B." in k}
    assert all(value > 0 for value in moved.values()), moved
    if recipe.framework == "swift":
        _serving_merges_first(run_dir)


def _serving_merges_first(run_dir: Path) -> None:
    """`finetune serve` never hands vLLM the fused expert adapter: it says why, merges the run (the framework's own
    export) and prints the command that serves the merged model."""
    out = run_cli("serve", str(run_dir), timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "adapts the routed experts" in out.stderr and "serving its merged model instead" in out.stderr
    merged = next(p.parent for p in run_dir.glob("*/export.json"))
    command = out.stdout.strip().splitlines()[-1]
    assert str(merged) in command and "--enable-lora" not in command
