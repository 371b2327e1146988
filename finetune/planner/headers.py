"""Recipe headers: the comment block that opens every recipe, generated from the recipe itself.

A header says what the recipe trains, the cluster it is sized for, the sequence length it fits, what its LoRA
adapts and the exact command that runs it. It is rendered from the `finetune:` block and from the planner's
plan of the recipe (its `TrainingSetup` and figures), never from the config directly, so `finetune recipes
--sync-headers` rewrites it and a test fails when a file's header has drifted. The `finetune:` block's notes
stay there, once.
"""

from __future__ import annotations

import textwrap

from finetune.catalog import COMPONENTS, GPUS
from finetune.frameworks.setup import DeepSpeedSettings, TrainingSetup
from finetune.planner import plan_figures, plan_recipe
from finetune.recipes.recipe import Recipe, split_header

WIDTH = 110
LAUNCHER = ".venv/bin/python -m finetune"


def _wrap(label: str, text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 14) or [""]
    return [f"# {label:<10}{lines[0]}"] + [f"# {'':<10}{line}" for line in lines[1:]]


def _deepspeed(ds: DeepSpeedSettings) -> str:
    if ds.source is None:
        return "none (plain data parallel)"
    places = (("param", ds.offload_params), ("optimizer", ds.offload_optimizer))
    moved = [(what, where) for what, where in places if where]
    where = f", {' and '.join(what for what, _ in moved)} offloaded to {moved[0][1]}" if moved else ""
    return f"{ds.source} (ZeRO stage {ds.zero_stage}{where})"


def _megatron_layout(s: TrainingSetup, gpus: int) -> str:
    parts = [
        f"tensor {s.tp} x pipeline {s.pp} x context {s.cp} x data {s.data_parallel(gpus)}",
        f"experts: expert {s.ep} x tensor {s.etp}",
    ]
    if s.sequence_parallel:
        parts.append("sequence parallel")
    if s.distributed_optimizer:
        parts.append("distributed optimizer")
    return "; ".join(parts)


def _batch(setup: TrainingSetup, gpus: int) -> list[str]:
    if setup.engine == "megatron":
        lines = _wrap("Batch", f"global batch {setup.global_batch} sequences per optimizer step")
        return lines + _wrap("Parallel", _megatron_layout(setup, gpus))
    per_step = setup.micro_batch * setup.grad_accum * gpus
    return _wrap(
        "Batch",
        f"{setup.micro_batch} x {setup.grad_accum} accumulation steps x {gpus} GPUs = {per_step} sequences per "
        "optimizer step",
    )


def _trains(setup: TrainingSetup, adapts: list[str]) -> list[str]:
    if setup.lora is None:
        return _wrap("Trains", "every parameter (full fine-tuning)")
    lines = _wrap("LoRA", f"rank {setup.lora.rank} on {', '.join(setup.lora_targets)}; adapts:")
    lines += [f"#   {'':<8}- {name}: {COMPONENTS[name]}" for name in adapts]
    frozen = [name for name in COMPONENTS if name not in adapts]
    return lines + _wrap("", f"frozen: {', '.join(frozen)}")


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
    plan = plan_recipe(recipe)
    setup = plan.setup
    node_word = "node" if meta.nodes == 1 else "nodes"
    lines = [f"# {meta.title}", "#"]
    lines += _wrap(
        "Cluster", f"{meta.nodes} {node_word} x {meta.gpus_per_node} {GPUS[meta.gpu]} ({meta.total_gpus} GPUs)"
    )
    length = f"{setup.seq_len:,} tokens per sequence"
    if setup.logits_tokens is not None:  # GRPO: the config caps prompts and completions apart
        length = f"prompts up to {setup.max_length:,} tokens, completions up to {setup.logits_tokens:,}"
    checkpointing = "on" if setup.checkpointing else "off"
    lines += _wrap("Fits", f"{length}, micro-batch {setup.micro_batch}, gradient checkpointing {checkpointing}")
    lines += _batch(setup, meta.total_gpus)
    lines += _trains(setup, meta.lora_adapts or [])
    if setup.engine == "deepspeed":
        lines += _wrap("DeepSpeed", _deepspeed(setup.deepspeed))
    for figure in plan_figures(plan):
        label, text = figure.split(" ", 1)
        lines += _wrap(label, text.strip())
    for need in meta.needs:
        lines += _wrap("Needs", need)
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
