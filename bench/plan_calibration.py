"""Print the planner's calibration tables (Markdown): the planner against published measurements, and against
the project reference's own memory-model table. Run: .venv/bin/python bench/plan_calibration.py

Each published row re-creates the published run's settings (engine, layout, LoRA, sequence, batch) as a
TrainingSetup and plans it on the published cluster; the model's shapes come from its config.json values.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune.frameworks.setup import DeepSpeedSettings, LoraSpec, TrainingSetup
from finetune.planner import plan_setup, what_if
from finetune.planner.memory import GIB, max_seq_len
from finetune.recipes.models import get_model

# Qwen/Qwen3-30B-A3B config.json values (the model of ms-swift's Megatron vs DeepSpeed comparison)
QWEN3_30B_A3B = {
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_hidden_layers": 48,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
    "tie_word_embeddings": False,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "decoder_sparse_step": 1,
    "mlp_only_layers": [],
    "norm_topk_prob": True,
    "attention_bias": False,
}
NON_EXPERT = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def training(
    engine="deepspeed", method="full", lora=None, seq_len=8192, stage=3, params=None, optimizer=None, grad_accum=1, **kw
) -> TrainingSetup:
    return TrainingSetup(
        framework="calibration",
        engine=engine,
        method=method,
        lora=lora,
        seq_len=seq_len,
        micro_batch=1,
        grad_accum=grad_accum,
        checkpointing=True,
        deepspeed=DeepSpeedSettings(stage if engine == "deepspeed" else 0, params, optimizer),
        **kw,
    )


def glm(name: str) -> dict:
    return get_model(name).config


MEGATRON_FULL_RECOMPUTE = {"engine": "megatron", "sequence_parallel": True, "logits_fused": True}

# (what ran, source, setup, model config, nodes, GPUs per node, GPU, measured GiB or verdict, s/it, tokens per step)
PUBLISHED = [
    (
        "GLM-4.5-Air, Megatron-SWIFT LoRA r32 attention, TP4 EP4, 8k packed, 4 GPUs",
        "ms-swift examples/megatron/lora/glm4_5_106b.sh: `4 * 70GiB; 40s/it` (GPU not stated)",
        training(
            method="lora",
            lora=LoraSpec(32, ("linear_qkv", "linear_proj"), layout="megatron"),
            tp=4,
            ep=4,
            grad_accum=16,
            **MEGATRON_FULL_RECOMPUTE,
        ),
        glm("glm-4.5-air"),
        1,
        4,
        "h20-96gb",
        70.0,
        40.0,
        16 * 8192,
    ),
    (
        "Qwen3-30B-A3B, Megatron-SWIFT full SFT, TP2 EP8, 8k packed, 16 x A800",
        "ms-swift examples/train/megatron/qwen3_moe.sh: `Megatron-LM: 9.6s/it; 16 * 60GiB`",
        training(tp=2, ep=8, grad_accum=2, **MEGATRON_FULL_RECOMPUTE),
        QWEN3_30B_A3B,
        2,
        8,
        "a100-80gb",
        60.0,
        9.6,
        16 * 8192,
    ),
    (
        "Qwen3-30B-A3B, ms-swift full SFT, DeepSpeed ZeRO-3, 8k, 16 x A800",
        "same file: `ZeRO3: 91.2s/it; 16 * 80GiB`",
        training(),
        QWEN3_30B_A3B,
        2,
        8,
        "a100-80gb",
        "ran; 80 GiB = the whole card, not a peak",
        91.2,
        16 * 8192,
    ),
    (
        "Qwen3-30B-A3B, ms-swift full SFT, DeepSpeed ZeRO-2, 8k, 16 x A800",
        "ms-swift Megatron-SWIFT docs, same comparison: ZeRO-2 `OOM`",
        training(stage=2),
        QWEN3_30B_A3B,
        2,
        8,
        "a100-80gb",
        "OOM",
        None,
        16 * 8192,
    ),
    (
        "GLM-4.5, SWIFT full SFT, 16 x H100 (first upstream README)",
        "upstream README, first version: full SFT listed on 16 H100",
        training(seq_len=4096),
        glm("glm-4.5"),
        2,
        8,
        "h100-80gb",
        "listed",
        None,
        None,
    ),
    (
        "GLM-4.5, SWIFT full SFT, 128 x H20 96GB, Megatron TP4 PP2 EP32 (later upstream READMEs)",
        "upstream README, later versions: full SFT on 128 H20",
        training(seq_len=4096, tp=4, pp=2, ep=32, grad_accum=16, **MEGATRON_FULL_RECOMPUTE),
        glm("glm-4.5"),
        16,
        8,
        "h20-96gb",
        "listed",
        None,
        None,
    ),
]

MEGATRON_AS_REFERENCE = {"engine": "megatron", "sequence_parallel": True, "logits_fused": False}
SWIFT_DEFAULT_LORA = LoraSpec(8, ("all-linear",), layout="megatron")
REFERENCE = [
    (
        "LLaMA-Factory LoRA ZeRO-3, GLM-4.5, 16 x H100",
        training(method="lora", lora=LoraSpec(16, NON_EXPERT)),
        "glm-4.5",
        2,
        8,
        "h100-80gb",
        (71.8, 85.5, 167),
        "~5.6k",
    ),
    (
        "LLaMA-Factory LoRA ZeRO-3, Air, 4 x H100",
        training(method="lora", lora=LoraSpec(16, NON_EXPERT)),
        "glm-4.5-air",
        1,
        4,
        "h100-80gb",
        (73.5, 84.1, 148),
        "~5.6k",
    ),
    (
        "Megatron-SWIFT LoRA, GLM-4.5, 16 x H100 (TP8 EP16)",
        training(method="lora", lora=SWIFT_DEFAULT_LORA, tp=8, ep=16, **MEGATRON_AS_REFERENCE),
        "glm-4.5",
        2,
        8,
        "h100-80gb",
        (49, 51, 61),
        "~79k",
    ),
    (
        "Megatron-SWIFT LoRA, Air, 4 x H100 (TP4 EP4)",
        training(method="lora", lora=SWIFT_DEFAULT_LORA, tp=4, ep=4, **MEGATRON_AS_REFERENCE),
        "glm-4.5-air",
        1,
        4,
        "h100-80gb",
        (59, 61, 76),
        "~38k",
    ),
    ("full SFT ZeRO-3, GLM-4.5, 16 x H100", training(), "glm-4.5", 2, 8, "h100-80gb", (406, None, None), "-"),
    ("full SFT ZeRO-3, Air, 4 x H100", training(), "glm-4.5-air", 1, 4, "h100-80gb", (473, None, None), "-"),
    (
        "full SFT, GLM-4.5, 128 x H20, Megatron TP4 PP2 EP32",
        training(tp=4, pp=2, ep=32, grad_accum=8, **MEGATRON_AS_REFERENCE),
        "glm-4.5",
        16,
        8,
        "h20-96gb",
        (81, 85, 104),
        "~21k",
    ),
    (
        "full SFT, Air, 32 x H20, Megatron TP2 EP32",
        training(tp=2, ep=32, grad_accum=8, **MEGATRON_AS_REFERENCE),
        "glm-4.5-air",
        4,
        8,
        "h20-96gb",
        (84, 89, 119),
        "~12.8k",
    ),
]


def _pct(mine: float, theirs: float) -> str:
    return f"{(mine - theirs) / theirs:+.0%}"


def published_table() -> list[str]:
    rows = [
        (
            "| run | source | planner GiB/GPU (required with reserve) | measured | planner vs measured | verdict "
            "| planner tokens/s | measured tokens/s |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for what, source, setup, config, nodes, gpn, gpu, measured, seconds, step_tokens in PUBLISHED:
        plan = plan_setup(setup, config, nodes=nodes, gpus_per_node=gpn, gpu=gpu)
        verdict = "fits" if plan.fits else "does not fit"
        if isinstance(measured, float):
            versus = _pct(plan.per_gpu_gib, measured)
            shown = f"{measured:.0f} GiB"
        else:
            versus, shown = "-", measured
        low, high = plan.throughput.tokens_per_s
        speed = f"{step_tokens / seconds:,.0f}" if seconds else "-"
        rows.append(
            f"| {what} | {source} | {plan.per_gpu_gib:.1f} ({plan.required_gib:.1f}) on {plan.gpu.name} | {shown} "
            f"| {versus} | {verdict} | {low:,.0f}-{high:,.0f} | {speed} |"
        )
    return rows


def reference_table() -> list[str]:
    rows = [
        (
            "| recipe | reference GiB 4k / 8k / 32k | planner GiB 4k / 8k / 32k | reference ceiling "
            "| planner ceiling (x1.2 reserve / none) | planner verdict at 4k |"
        ),
        "|---|---|---|---|---|---|",
    ]
    for what, setup, model, nodes, gpn, gpu, gib, ceiling in REFERENCE:
        plan = plan_setup(setup, glm(model), nodes=nodes, gpus_per_node=gpn, gpu=gpu, seq_len=4096)
        ours = [what_if(plan, seq_len=s).per_gpu_gib for s in (4096, 8192, 32768)]
        theirs = " / ".join("-" if g is None else f"{g:g}" for g in gib)
        mine = " / ".join(f"{g:.1f}" if t is not None else "-" for g, t in zip(ours, gib, strict=True))
        bare = max_seq_len(plan.inputs, plan.gpu.memory_gib * GIB, reserve=1.0)
        ceilings = f"{plan.max_seq_len:,} / {bare:,}" if plan.max_seq_len else "none"
        verdict = "fits" if plan.fits else "does not fit"
        rows.append(f"| {what} | {theirs} | {mine} | {ceiling} | {ceilings} | {verdict} |")
    return rows


def main() -> int:
    print("### Planner against published measurements\n")
    print("\n".join(published_table()))
    print("\n### Planner against the project reference's memory-model table\n")
    print("\n".join(reference_table()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
