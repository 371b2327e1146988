"""One table sorts glm4_moe names into parts, for the headers' LoRA claims and the planner's counts alike."""

from __future__ import annotations

import pytest

from finetune.catalog import COMPONENTS
from finetune.planner.params import compute_counts
from finetune.recipes.components import component_of, part_of
from finetune.recipes.models import get_model
from tests.unit.planner.test_params import REFERENCE_BUCKETS

NAMES = {  # a parameter or module name as transformers or PEFT writes it -> (part, component)
    "model.layers.0.self_attn.q_proj.weight": ("attention", "attention"),
    "model.layers.3.self_attn.k_norm.weight": ("attention", "attention"),
    "base_model.model.model.layers.0.self_attn.o_proj.lora_A.default.weight": ("attention", "attention"),
    "model.layers.0.mlp.gate_proj.weight": ("dense_mlp", "dense_mlp"),
    "model.layers.5.mlp.shared_experts.down_proj.weight": ("shared_experts", "shared_experts"),
    "model.layers.5.mlp.experts.gate_up_proj": ("routed_experts", "routed_experts"),
    "base_model.model.model.layers.5.mlp.experts.lora_A.default.weight": ("routed_experts", "routed_experts"),
    "model.layers.5.mlp.experts": ("routed_experts", "routed_experts"),
    "model.layers.5.mlp.gate.weight": ("router", "router"),
    "model.layers.5.mlp.gate.e_score_correction_bias": ("router", "router"),
    "model.layers.5.mlp.gate": ("router", "router"),
    "model.embed_tokens.weight": ("embeddings", "embeddings"),
    "lm_head.weight": ("lm_head", "embeddings"),
    "base_model.model.lm_head.weight": ("lm_head", "embeddings"),
    "model.layers.5.input_layernorm.weight": ("norms", None),
    "model.norm.weight": ("norms", None),
}


@pytest.mark.parametrize("name", NAMES)
def test_names_sort_into_their_part_and_component(name):
    assert (part_of(name), component_of(name)) == NAMES[name]


def test_every_component_is_reachable():
    assert {component for _, component in NAMES.values()} - {None} == set(COMPONENTS)


@pytest.mark.parametrize("model", ["glm-4.5-air", "glm-4.5"])
def test_planner_buckets_recounted_with_the_table_match_the_reference(model):
    counts = compute_counts(get_model(model).config, None)  # the real model on the meta device, no cache
    assert {k: round(v / 1e9, 3) for k, v in counts.buckets.items() if k != "norms"} == REFERENCE_BUCKETS[model]
