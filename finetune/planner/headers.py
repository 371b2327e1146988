"""Recipe headers: the comment block that opens every recipe, generated from the recipe itself.

A header says what the recipe trains, the cluster it is sized for, the sequence length it fits, what its LoRA
adapts and the exact command that runs it. It is rendered from the `finetune:` block and the framework config,
so `finetune recipes --sync-headers` rewrites it and a test fails when a file's header has drifted.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from finetune.catalog import COMPONENTS, GPUS
from finetune.frameworks import get_framework
from finetune.paths import REPO_ROOT
from finetune.recipes.recipe import Recipe, split_header

WIDTH = 110
LAUNCHER = ".venv/bin/python -m finetune"


def _wrap(label: str, text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 14) or [""]
    return [f"# {label:<10}{lines[0]}"] + [f"# {'':<10}{line}" for line in lines[1:]]


def _zero_stage(path: str | None) -> str:
    if not path:
        return "none (plain data parallel)"
    file = Path(path) if Path(path).is_absolute() else REPO_ROOT / path
    zero = json.loads(file.read_text()).get("zero_optimization", {})
    offload = [k.removeprefix("offload_") for k in ("offload_param", "offload_optimizer") if k in zero]
    where = f", {' and '.join(offload)} offloaded to {zero['offload_param' if 'offload_param' in zero else 'offload_optimizer']['device']}" if offload else ""
    return f"{path} (ZeRO stage {zero.get('stage', 0)}{where})"


def _megatron_layout(config: dict, gpus: int) -> str:
    tp = config.get("tensor_model_parallel_size", 1)
    pp = config.get("pipeline_model_parallel_size", 1)
    cp = config.get("context_parallel_size", 1)
    ep = config.get("expert_model_parallel_size", 1)
    etp = config.get("expert_tensor_parallel_size", tp)
    parts = [f"tensor {tp} x pipeline {pp} x context {cp} x data {gpus // (tp * pp * cp)}", f"experts: expert {ep} x tensor {etp}"]
    if config.get("sequence_parallel"):
        parts.append("sequence parallel")
    if config.get("use_distributed_optimizer"):
        parts.append("distributed optimizer")
    return "; ".join(parts)


def run_commands(recipe: Recipe) -> list[str]:
    meta = recipe.meta
    base = f"{LAUNCHER} launch {recipe.id}"
    if meta.nodes == 1:
        lines = [f"#   {base}"]
    else:
        lines = [
            f"# on every node (R = 0..{meta.nodes - 1}, the same --run-dir on storage all nodes share):",
            f"#   {base} \\",
            f"#     --nnodes {meta.nodes} --node-rank R --master-addr NODE0_ADDR --run-dir /shared/runs/NAME",
        ]
    return lines + [
        f"# It trains on the bundled sample `{meta.dataset}` (data/prepared/); --dataset NAME trains on yours",
        "# (python -m finetune prepare FILE... --name NAME), --model PATH on a local checkpoint.",
    ]


def render_header(recipe: Recipe) -> str:
    meta = recipe.meta
    framework = get_framework(recipe.framework)
    shape = framework.shape(recipe.config)
    gpu = GPUS[meta.gpu]
    node_word = "node" if meta.nodes == 1 else "nodes"
    lines = [f"# {meta.title}", "#"]
    lines += _wrap("Cluster", f"{meta.nodes} {node_word} x {meta.gpus_per_node} {gpu} ({meta.total_gpus} GPUs)")
    config = recipe.config
    checkpointing = "on" if shape.gradient_checkpointing else "off"
    length = f"{shape.seq_len:,} tokens per sequence"
    if meta.method == "grpo":
        length = f"prompts up to {shape.seq_len:,} tokens, completions up to {config['max_completion_length']:,}"
    lines += _wrap("Fits", f"{length}, micro-batch {shape.micro_batch}, gradient checkpointing {checkpointing}")
    if meta.engine == "megatron":
        lines += _wrap("Batch", f"global batch {config['global_batch_size']} sequences per optimizer step")
        lines += _wrap("Parallel", _megatron_layout(config, meta.total_gpus))
    else:
        global_batch = shape.micro_batch * shape.grad_accum * meta.total_gpus
        lines += _wrap(
            "Batch",
            f"{shape.micro_batch} x {shape.grad_accum} accumulation steps x {meta.total_gpus} GPUs = "
            f"{global_batch} sequences per optimizer step",
        )
    if shape.lora_rank is not None:
        adapts = meta.lora_adapts or []
        lines += _wrap("LoRA", f"rank {shape.lora_rank} on {', '.join(shape.lora_targets or ())}; adapts:")
        lines += [f"#   {'':<8}- {name}: {COMPONENTS[name]}" for name in adapts]
        frozen = [name for name in COMPONENTS if name not in adapts]
        lines += _wrap("", f"frozen: {', '.join(frozen)}")
    else:
        lines += _wrap("Trains", "every parameter (full fine-tuning)")
    if meta.engine == "deepspeed":
        lines += _wrap("DeepSpeed", _zero_stage(shape.deepspeed))
    from finetune.planner import header_figures

    for figure in header_figures(recipe):
        label, text = figure.split(" ", 1)
        lines += _wrap(label, text.strip())
    for need in meta.needs:
        lines += _wrap("Needs", need)
    for note in meta.notes:
        lines += _wrap("Note", note)
    lines += ["#", "# Run:"] + run_commands(recipe) + ["#"]
    return "\n".join(lines) + "\n"


def sync_header(recipe: Recipe) -> bool:
    """Rewrite the recipe's header if it drifted; True when the file changed."""
    header = render_header(recipe)
    _, body = split_header(recipe.text)
    text = header + body
    if text == recipe.text:
        return False
    recipe.path.write_text(text)
    return True
