"""Which part of a glm4_moe decoder a module or parameter name belongs to: one table for the whole project.

Recipe headers state which components their LoRA adapts (`finetune.catalog.COMPONENTS`); the tests check that
claim against the modules PEFT actually wraps, and the planner counts parameters by the same parts. Module
names alone mislead: from transformers 5 the routed experts are fused 3-D parameters, not per-expert Linear
layers, so `gate_proj` names the dense MLP or the shared expert, never a routed expert.
"""

from __future__ import annotations

import re

# (pattern, part), first match wins; names may carry PEFT's prefixes (`base_model.model.`) and suffixes
_PARTS = [
    (re.compile(r"\.self_attn\."), "attention"),  # q/k/v/o projections and their qk-norms
    (re.compile(r"\.mlp\.shared_experts\."), "shared_experts"),
    (re.compile(r"\.mlp\.experts\b"), "routed_experts"),
    (re.compile(r"\.mlp\.gate(\.|$)"), "router"),
    (re.compile(r"\.mlp\.(gate_proj|up_proj|down_proj)\b"), "dense_mlp"),
    (re.compile(r"embed_tokens\b"), "embeddings"),
    (re.compile(r"(^|\.)lm_head\b"), "lm_head"),
]
NORMS = "norms"  # everything else: the layer norms


def part_of(name: str) -> str:
    """The part a parameter or module name belongs to: a component, `lm_head`, or `norms`."""
    for pattern, part in _PARTS:
        if pattern.search(name):
            return part
    return NORMS


def component_of(name: str) -> str | None:
    """The component (a key of `finetune.catalog.COMPONENTS`) a name belongs to; None for the layer norms.
    The output head counts as `embeddings`, as the headers describe it."""
    part = part_of(name)
    return {"lm_head": "embeddings", NORMS: None}.get(part, part)
