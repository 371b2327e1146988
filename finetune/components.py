"""Names for the parts of a glm4_moe decoder that LoRA can adapt.

A recipe header states which parts its LoRA adapts; these names are how that claim is written and checked
against the modules PEFT actually wraps (module names alone mislead: from transformers 5 the routed experts
are fused 3-D parameters, not per-expert Linear layers).
"""

from __future__ import annotations

import re

COMPONENTS = {
    "attention": "q_proj, k_proj, v_proj, o_proj of every layer",
    "dense_mlp": "gate_proj, up_proj, down_proj of the dense MLP in the first (non-MoE) layers",
    "shared_experts": "gate_proj, up_proj, down_proj of the shared expert in every MoE layer",
    "routed_experts": "the routed experts' fused gate_up_proj and down_proj in every MoE layer",
    "router": "the MoE router (gate) of every MoE layer",
    "embeddings": "the token embeddings and the output head",
}

_PATTERNS = [
    (re.compile(r"\.self_attn\.(q_proj|k_proj|v_proj|o_proj)\b"), "attention"),
    (re.compile(r"\.mlp\.shared_experts\."), "shared_experts"),
    (re.compile(r"\.mlp\.experts\b"), "routed_experts"),
    (re.compile(r"\.mlp\.gate$|\.mlp\.gate\."), "router"),
    (re.compile(r"\.mlp\.(gate_proj|up_proj|down_proj)\b"), "dense_mlp"),
    (re.compile(r"(embed_tokens|lm_head)\b"), "embeddings"),
]


def component_of(module_name: str) -> str | None:
    """The component a (possibly PEFT-prefixed) module or parameter name belongs to, or None."""
    for pattern, component in _PATTERNS:
        if pattern.search(module_name):
            return component
    return None
