"""Each LoRA recipe adapts exactly the components its header names, as LLaMA-Factory really wraps them.

Counted from the PEFT model that LLaMA-Factory's own loader builds on the replica, never from target names:
with transformers 5 a name like `gate_proj` could land on the fused routed experts, and `all` skips them.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.recipes.components import component_of
from finetune.recipes.models import get_model
from finetune.recipes.recipe import all_recipes
from finetune.replica.build import ensure_replica

LF_LORA = [r.id for r in all_recipes() if r.framework == "llamafactory" and r.meta.method == "lora"]


def _expected_counts(model_name: str, config: dict, adapts: list[str]) -> Counter:
    n_layers = config["num_hidden_layers"]
    dense = get_model(model_name).n_dense_layers
    per_component = {
        "attention": 4 * n_layers,
        "dense_mlp": 3 * dense,
        "shared_experts": 3 * (n_layers - dense),
        "routed_experts": 2 * (n_layers - dense),  # PEFT wraps the fused gate_up_proj and down_proj of each layer
    }
    return Counter({c: per_component[c] for c in adapts})


@pytest.mark.parametrize("recipe_id", LF_LORA)
def test_adapted_modules_are_what_the_header_says(recipe_id, tmp_path, monkeypatch):
    from llamafactory.hparams.parser import _parse_train_args
    from llamafactory.model import load_model, load_tokenizer

    from finetune.frameworks.trainer.expert_lora import TARGET_PARAMETERS_ENV, add_target_parameters

    plan = plan_launch(
        LaunchRequest(recipe=recipe_id, nnodes=1, nproc_per_node=1, run_dir=tmp_path / "run"), check=False
    )
    # what the trainer entry does with the run's environment: the routed experts' parameters reach PEFT
    monkeypatch.setenv(TARGET_PARAMETERS_ENV, plan.env.get(TARGET_PARAMETERS_ENV, ""))
    monkeypatch.setattr("llamafactory.model.adapter.get_peft_model", __import__("peft").get_peft_model)
    add_target_parameters()
    replica = ensure_replica(plan.recipe.meta.model)
    config = {**plan.config, "model_name_or_path": str(replica), "bf16": False, "output_dir": str(tmp_path)}
    config.pop("deepspeed", None)
    model_args, _, _, finetuning_args, _ = _parse_train_args(config)
    tokenizer = load_tokenizer(model_args)["tokenizer"]
    model = load_model(tokenizer, model_args, finetuning_args, is_trainable=True)

    wrapped = {re.sub(r"\.lora_[AB]\..*$", "", n) for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_" not in n for n in wrapped) and wrapped
    counts = Counter(component_of(n) for n in wrapped)
    assert None not in counts, sorted(n for n in wrapped if component_of(n) is None)
    assert counts == _expected_counts(plan.recipe.meta.model, model.config.to_dict(), plan.recipe.meta.lora_adapts)
    # the header names the same components
    for component in plan.recipe.meta.lora_adapts:
        assert f"- {component}:" in plan.recipe.header
    assert ("frozen: routed_experts" in plan.recipe.header) == ("routed_experts" not in plan.recipe.meta.lora_adapts)
