"""`finetune plan` output: a table of the per-GPU memory terms with the verdict, or the same as JSON."""

from __future__ import annotations

import io
import json

from finetune.frameworks.setup import TrainingSetup
from finetune.planner import TERM_NAMES, ResourcePlan
from finetune.planner.memory import GIB


def _count(n: float) -> str:
    return f"{n / 1e9:,.3f} B" if n >= 1e9 else f"{n / 1e6:,.1f} M"


def _hours(h: float) -> str:
    return f"{h:,.1f} h" if h < 48 else f"{h / 24:,.1f} days"


def _rollout_turns(setup: TrainingSetup) -> str:
    if not setup.rollout_sleeps:
        return "it stays resident"
    offloaded = " and the trainer's states wait in host RAM while it generates"
    return "it sleeps while the trainer runs" + (offloaded if setup.trainer_offloaded_while_rolling_out else "")


def render_text(plan: ResourcePlan) -> str:
    """The plan as a rich table plus a few lines (returned as text so that tests can read it)."""
    from rich.console import Console
    from rich.table import Table

    x, setup, memory = plan.inputs, plan.setup, plan.memory
    # recorded into a buffer, not printed: the caller prints the text once (a recording console also writes)
    console = Console(file=io.StringIO(), width=110, record=True, force_terminal=False)
    console.print(
        f"[bold]{plan.recipe_id}[/] on {plan.nodes} x {plan.gpus_per_node} {plan.gpu.name} "
        f"({plan.gpus} GPUs, {plan.gpu.memory_gib:.1f} GiB each)"
    )
    trainable_share = plan.trainable_params / plan.total_params
    console.print(
        f"{plan.model}: {_count(plan.total_params)} parameters, {_count(plan.trainable_params)} trainable "
        f"({trainable_share:.2%}); {plan.setup.describe()}"
    )
    checkpointing, logits = ("on" if setup.checkpointing else "off"), ("fused" if setup.logits_fused else "unfused")
    console.print(
        f"{x.seq_len:,} tokens x micro-batch {x.micro_batch} x {x.grad_accum} accumulation, gradient "
        f"checkpointing {checkpointing}, logits {logits}"
    )

    table = Table(title="per-GPU memory (planner)", title_justify="left")
    table.add_column("term")
    table.add_column("GiB", justify="right")
    for term, gib in memory.breakdown_gib().items():
        if gib >= 0.005 or term in ("weights", "activations", "logits", "overhead"):
            table.add_row(TERM_NAMES[term], f"{gib:.2f}")
    table.add_row("[bold]total[/]", f"[bold]{plan.per_gpu_gib:.1f}[/]")
    table.add_row(f"required (x{memory.reserve:g} reserve on activations, logits)", f"{plan.required_gib:.1f}")
    console.print(table)

    verdict = "[green]FITS[/]" if plan.fits else "[red]DOES NOT FIT[/]"
    because = " (the colocated vLLM does not fit its share)" if plan.trainer_fits and not plan.fits else ""
    console.print(f"Verdict: {verdict} ({plan.required_gib:.1f} of {plan.capacity_gib:.1f} GiB per GPU){because}")
    for problem in plan.problems:
        console.print(f"  layout: {problem}")
    if plan.max_seq_len:
        capped = " (the model's context)" if plan.max_seq_len == plan.context else ""
        console.print(f"Longest sequence that fits: {plan.max_seq_len:,} tokens at micro-batch {x.micro_batch}{capped}")
    elif plan.problems:
        console.print("Longest sequence that fits: none (the parallel layout does not divide the GPUs)")
    else:
        console.print("Longest sequence that fits: none (model states alone exceed the GPU)")
    if setup.rollout_gpu_fraction:
        share = setup.rollout_gpu_fraction * plan.gpu.memory_gib
        turns = _rollout_turns(setup)
        console.print(
            f"Rollout (vLLM, colocated): {share:.1f} GiB per GPU while generating; {turns}; "
            f"it adds {memory.rollout / GIB:.1f} GiB to the training peak"
        )
        console.print(f"Rollout budget: {plan.rollout.describe()}")
    console.print(f"Stop: {plan.stop.describe()}")
    host, nvme = memory.host_ram_per_node / GIB, memory.nvme_per_node / GIB
    console.print(
        f"Host RAM per node for offloaded states: {host:,.0f} GiB"
        if host >= 0.5
        else "Host RAM per node for offloaded states: none (nothing offloaded)"
    )
    if nvme >= 0.5:
        console.print(f"NVMe per node for offloaded states: {nvme:,.0f} GiB")
    low, high = plan.throughput.tokens_per_s
    mfu = plan.throughput.mfu
    gflop = plan.throughput.flops_per_token / 1e9
    console.print(
        f"Throughput: {low:,.0f}-{high:,.0f} tokens/s on {plan.gpus} GPUs "
        f"({mfu[0]:.1%}-{mfu[1]:.1%} MFU, {gflop:,.0f} GFLOP per token)"
    )
    if plan.hours:
        fast, slow = plan.hours
        console.print(f"{plan.tokens:,.0f} tokens: {_hours(fast)} to {_hours(slow)}")
    if x.seq_len > plan.context:
        console.print(f"Note: {x.seq_len:,} tokens is longer than the model's context ({plan.context:,} positions)")
    for note in plan.setup.notes:
        console.print(f"Note: {note}")
    return console.export_text()


def render_json(plan: ResourcePlan) -> str:
    return json.dumps(plan.to_json(), indent=2)
