"""The one source of the project's choice lists and defaults: model names, GPU kinds, frameworks, methods,
components, timeouts.

Imported by the CLI for `choices=` and by the schemas for their `Literal` types, so it imports nothing: keeping
these lists here is what lets `--help` stay fast without copying them into every command. The facts behind
the names live elsewhere (a model's config in `recipes/models/NAME.json`, a GPU's memory and throughput in
`finetune/planner/gpus.py`); tests check that both cover exactly these names.
"""

from __future__ import annotations

MODELS = ("glm-4.5", "glm-4.5-air", "glm-4.6", "glm-4.7")  # recipes/models/<name>.json
CHAT_FORMAT_NAMES = ("glm45", "glm47")  # finetune/glm/chat_formats.py
DEFAULT_MODEL = "glm-4.5-air"  # the replica, the demo and the benchmarks default to the smaller model

GPUS = {"h100-80gb": "H100 80GB", "h200": "H200 141GB", "h20-96gb": "H20 96GB", "a100-80gb": "A100 80GB"}
DEFAULT_GPU = "h100-80gb"

FRAMEWORKS = ("llamafactory", "swift")  # recipes/<framework>/
METHODS = ("lora", "full", "dpo", "grpo")
METHOD_DATA = {"lora": "sft", "full": "sft", "dpo": "preference", "grpo": "rl"}  # the prepared kind each trains on
ENGINES = ("deepspeed", "megatron")
SERVING_ENGINES = ("vllm", "sglang")

COMPONENTS = {
    "attention": "q_proj, k_proj, v_proj, o_proj of every layer",
    "dense_mlp": "gate_proj, up_proj, down_proj of the dense MLP in the first (non-MoE) layers",
    "shared_experts": "gate_proj, up_proj, down_proj of the shared expert in every MoE layer",
    "routed_experts": "the routed experts' fused gate_up_proj and down_proj in every MoE layer",
    "router": "the MoE router (gate) of every MoE layer",
    "embeddings": "the token embeddings and the output head",
}

JOIN_TIMEOUT_S = 600.0  # seconds every node has to arrive, before and inside torchrun
MAX_DROPPED_ROWS = 0.01  # share of training rows a launch lets the framework delete for their length
