"""The MoE expert implementations the installed transformers offers for glm4_moe, and what each costs.

On the Hugging Face path the routed experts dominate MoE speed. transformers 5 stores them as fused 3-D tensors
(`gate_up_proj`, `down_proj`) and picks their forward from `config._experts_implementation` (keyword
`experts_implementation=`): "eager" is the model's own loop over the experts that received tokens, and the
functions registered in `transformers.integrations.moe.ALL_EXPERTS_FUNCTIONS` replace it ("grouped_mm": one
grouped GEMM over tokens sorted by expert; "batched_mm": one weight copy per (token, expert) pair, then bmm).
The names are read from the installed library, never assumed.
"""

from __future__ import annotations

from functools import cache

from finetune.errors import FinetuneError

EAGER = "eager"
DESCRIPTIONS = {
    "eager": "per-expert loop (the model's own forward: one GEMM pair per expert that received tokens)",
    "grouped_mm": "grouped GEMM (tokens sorted by expert, one torch grouped_mm call per projection)",
    "batched_mm": "batched GEMM over gathered weights (one copy of the expert's weights per token and choice)",
}


@cache
def available() -> tuple[str, ...]:
    """The implementation names the installed transformers accepts and can run for glm4_moe."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    return (EAGER, *sorted(ALL_EXPERTS_FUNCTIONS.valid_keys()))


@cache
def default() -> str:
    """What transformers picks when nothing is asked for: built on a two-layer tiny config, nothing allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    from finetune.bench.slice import hf_config, make_slice

    config = hf_config(make_slice("glm-4.5-air", 2, tiny=True).config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return str(model.config._experts_implementation)


def describe(name: str) -> str:
    return DESCRIPTIONS.get(name, "registered by the installed transformers")


def resolve(names: list[str]) -> list[str]:
    """Requested names, `default` and `all` expanded; unknown names are refused with what exists."""
    offered = available()
    resolved: list[str] = []
    for name in names:
        expanded = list(offered) if name == "all" else [default()] if name == "default" else [name]
        for item in expanded:
            if item not in offered:
                raise FinetuneError(
                    f"--experts-impl {item}: the installed transformers offers {', '.join(offered)} "
                    "(or `default`, `all`)."
                )
            if item not in resolved:
                resolved.append(item)
    return resolved


def gathered_weight_bytes(name: str, config: dict, tokens: int, bytes_per_value: int) -> int:
    """Extra memory an implementation allocates for expert weights in one MoE layer's forward. Only
    `batched_mm` gathers: every (token, choice) pair gets its own copy of its expert's gate_up and down matrices,
    which rules it out for training-length sequences."""
    if name != "batched_mm":
        return 0
    h, i, k = config["hidden_size"], config["moe_intermediate_size"], config["num_experts_per_tok"]
    return tokens * k * 3 * i * h * bytes_per_value
