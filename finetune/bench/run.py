"""The benchmark matrix: every method x gradient checkpointing x sequence length x expert implementation on one
slice, measured and set beside the planner's prediction, one JSON record per configuration.

The model and its optimizer are built once per method and reused across the configurations (checkpointing and the
expert implementation switch in place), so the optimizer states are allocated, as in a real run, before the
measured steps. A configuration that runs out of memory is recorded as such and the next one goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.bench import compare, experts, measure, records
from finetune.bench.budget import Budget, Estimator
from finetune.bench.lora import recipe_lora
from finetune.bench.slice import Slice
from finetune.errors import FinetuneError


@dataclass(frozen=True)
class Matrix:
    methods: tuple[str, ...]
    checkpointing: tuple[bool, ...]
    seq_lens: tuple[int, ...]
    experts_impls: tuple[str, ...]
    steps: int = 3
    warmup: int = 1
    micro_batch: int = 1
    seed: int = 0

    def configs(self, method: str):
        for on in self.checkpointing:
            for seq_len in self.seq_lens:
                for impl in self.experts_impls:
                    yield on, seq_len, impl


def _oom_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError, MemoryError)


def _base_record(
    piece: Slice,
    device: measure.Device,
    method: str,
    on: bool,
    seq_len: int,
    impl: str,
    matrix: Matrix,
    dtype_name: str,
    lora,
) -> dict[str, Any]:
    lora_record = None
    if method == "lora":
        lora_record = {"recipe": lora.recipe_id, "rank": lora.rank, "alpha": lora.alpha, "targets": list(lora.targets)}
    return {
        "kind": "train_step",
        "format": records.FORMAT,
        "created": records.stamp(),
        **device.to_json(),
        "versions": measure.environment(),
        "slice": piece.describe(),
        "config": {
            "method": method,
            "checkpointing": on,
            "seq_len": seq_len,
            "micro_batch": matrix.micro_batch,
            "experts_impl": impl,
            "dtype": dtype_name,
            "attn_implementation": "sdpa",
            "lora": lora_record,
            "steps": matrix.steps,
            "warmup": matrix.warmup,
        },
    }


def _planned(piece: Slice, device: measure.Device, method: str, on: bool, seq_len: int, matrix: Matrix, lora):
    return compare.planned(
        piece.config,
        method=method,
        checkpointing=on,
        seq_len=seq_len,
        micro_batch=matrix.micro_batch,
        lora=compare.lora_spec(lora.rank, lora.targets),
        gpu_key=device.planner_gpu,
    )


def measure_config(
    session,
    device: measure.Device,
    seq_len: int,
    matrix: Matrix,
    flops_per_token: float,
    cpu_floor_bytes: int | None = None,
):
    """Warm-up steps, then the measured ones under the peak-memory tracker; the metrics of one configuration."""
    from finetune.bench.step import random_batch, train_step

    vocab = int(session.piece.config["vocab_size"])
    batches = [
        random_batch(vocab, seq_len, matrix.micro_batch, session.device, matrix.seed + n)
        for n in range(matrix.warmup + matrix.steps)
    ]
    for batch in batches[: matrix.warmup]:
        train_step(session, batch)
    times, losses = [], []
    with measure.PeakMemory(device, cpu_floor_bytes) as peak:
        for batch in batches[matrix.warmup :]:
            loss, seconds = measure.timed(lambda b=batch: train_step(session, b), device)
            times.append(seconds)
            losses.append(loss)
    with measure.SavedForBackward() as saved:  # one more forward, outside the timed and measured steps
        session.model(input_ids=batches[-1], labels=batches[-1]).loss.detach()
    step_time = measure.median(times)
    tokens_per_s = seq_len * matrix.micro_batch / step_time
    return {
        "peak_memory_bytes": peak.peak_bytes,
        "peak_reserved_bytes": peak.reserved_bytes,
        "memory_kind": peak.kind,
        "baseline_memory_bytes": peak.baseline_bytes,
        "saved_for_backward_bytes": saved.bytes,
        "step_time_s": step_time,
        "step_times_s": times,
        "tokens_per_s": tokens_per_s,
        "mfu": measure.model_flops_utilisation(flops_per_token, tokens_per_s, device),
        "loss": losses[-1],
        "trainable_params": session.trainable_params,
        "total_params": session.total_params,
        "adapted": session.adapted,
    }


def _estimate(estimator: Estimator, record: dict, needs_setup: bool) -> float:
    setup = estimator.setup_seconds(record["slice"]["model"], record["config"]["method"]) if needs_setup else 0.0
    return setup + estimator.config_seconds(record)


def run_matrix(
    piece: Slice,
    matrix: Matrix,
    device: measure.Device,
    out: Path | None,
    log=print,
    budget: Budget | None = None,
    estimator: Estimator | None = None,
) -> list[dict]:
    """Measure every configuration of `matrix` on `piece`; records are appended to `out` as they come.

    With a `budget`, a configuration whose estimate (from `estimator`, which learns from each one measured here)
    does not fit in what is left is recorded as skipped for the budget instead of started."""
    import time

    import torch

    from finetune.bench import step

    if device.kind == "cpu" and not piece.tiny:
        raise FinetuneError(
            "Real GLM-4.5 shapes need a GPU (the slice alone is billions of parameters); "
            "--tiny runs the same benchmark on a CPU with the replica's shapes."
        )
    dtype = torch.bfloat16 if device.kind == "gpu" else torch.float32
    dtype_name = str(dtype).removeprefix("torch.")
    lora = recipe_lora(piece.model)
    capacity = device.memory_bytes
    cpu_floor = None
    if device.kind == "cpu":  # what the libraries alone occupy, so the CPU peak counts the model and the step
        import peft  # noqa: F401
        import transformers.models.glm4_moe.modeling_glm4_moe  # noqa: F401

        cpu_floor = measure.resident_bytes()
    if budget is not None and estimator is None:
        estimator = Estimator(device.kind)
    results = []
    for method in matrix.methods:
        session = None
        oom_at: dict[tuple[bool, str], int] = {}  # memory only grows with the sequence: skip longer ones
        for on, seq_len, impl in matrix.configs(method):
            record = _base_record(piece, device, method, on, seq_len, impl, matrix, dtype_name, lora)
            plan = _planned(piece, device, method, on, seq_len, matrix, lora)
            record["planned"] = plan.to_json()
            gathered = experts.gathered_weight_bytes(impl, piece.config, seq_len * matrix.micro_batch, dtype.itemsize)
            shorter_oom = oom_at.get((on, impl))
            if shorter_oom is not None and seq_len >= shorter_oom:
                record |= {"status": "skipped", "reason": f"ran out of memory at {shorter_oom:,} tokens already"}
            elif capacity and gathered > capacity:
                record |= {
                    "status": "skipped",
                    "reason": f"{impl} would gather {gathered / 2**30:,.0f} GiB of "
                    "expert weights in one MoE layer's forward, more than the device holds",
                }
            elif budget is not None and not budget.allows(estimate := _estimate(estimator, record, session is None)):
                record |= {"status": "skipped", "reason": budget.refusal("this configuration", estimate)}
            else:
                failed = False
                started = time.time()
                try:
                    if session is None:
                        session = step.start(
                            piece,
                            method,
                            device=device.torch_device,
                            dtype=dtype,
                            lora=lora,
                            experts_impl=impl,
                            seed=matrix.seed,
                        )
                        record["setup_s"] = time.time() - started  # building the model and its optimizer
                        started = time.time()
                    session.set_experts(impl)
                    session.set_checkpointing(on)
                    metrics = measure_config(session, device, seq_len, matrix, plan.flops_per_token, cpu_floor)
                    record |= {"status": "ok", "metrics": metrics, "ratios": compare.ratios(metrics, record["planned"])}
                except _oom_errors() as exc:
                    record |= {"status": "oom", "reason": str(exc).splitlines()[0][:300]}
                    failed = True
                    oom_at[(on, impl)] = seq_len
                except Exception as exc:  # noqa: BLE001 - e.g. an implementation whose kernels are missing: recorded
                    record |= {"status": "error", "reason": f"{type(exc).__name__}: {str(exc)[:300]}"}
                    failed = True  # start from a fresh model: the failed step may have left state behind
                record["elapsed_s"] = time.time() - started  # the configuration's steps, what estimates learn from
                if failed and session is not None:  # outside `except`: its traceback holds tensors
                    session.release()
                    session = None
            if estimator is not None:
                estimator.learn(record)
            results.append(record)
            if out is not None:
                records.append(out, record)
            log(summary_line(record))
        if session is not None:
            session.release()
    return results


def summary_line(record: dict) -> str:
    c, s = record["config"], record["slice"]
    head = (
        f"[{record['device_kind']}] {s['model']} {s['layers']}L {c['method']:<4} "
        f"ckpt={'on ' if c['checkpointing'] else 'off'} "
        f"seq={c['seq_len']:>6} experts={c['experts_impl']:<10}"
    )
    if record["status"] != "ok":
        return f"{head} {record['status']}: {record.get('reason', '')}"
    m, p = record["metrics"], record["planned"]
    mfu = f"{m['mfu']:.1%}" if m["mfu"] is not None else "-"
    ratio = record["ratios"]["memory"]
    times = f"x{ratio:.2f}" if ratio is not None else "x-"
    return (
        f"{head} peak {m['peak_memory_bytes'] / 2**30:7.2f} GiB ({m['memory_kind']}; planned "
        f"{p['memory_gib']:.2f}, {times}) step {m['step_time_s']:.3f} s {m['tokens_per_s']:,.0f} tok/s MFU {mfu}"
    )


def plan_only_table(piece: Slice, matrix: Matrix, gpu_key: str) -> list[str]:
    """The planner's figures for every configuration of the matrix, without running anything (any machine):
    what the measurements will be set against."""
    from finetune.planner.gpus import get_gpu

    card = get_gpu(gpu_key)
    lora = recipe_lora(piece.model)
    header = (
        f"| model | layers (dense+MoE) | method | checkpointing | seq | planned GiB (allocator view) "
        f"| fits {card.name} | planned tokens/s | GFLOP per token |"
    )
    rows = [header, "|---|---|---|---|---|---|---|---|---|"]
    for method in matrix.methods:
        for on in matrix.checkpointing:
            for seq_len in matrix.seq_lens:
                device = measure.Device("gpu", card.name, "cuda", gpu_key, card.bf16_tflops, None)
                p = _planned(piece, device, method, on, seq_len, matrix, lora)
                low, high = p.tokens_per_s
                gib = p.memory_bytes / 2**30
                fits = "yes" if p.memory_bytes + compare.FIXED_OVERHEAD <= card.memory_gib * 2**30 else "no"
                rows.append(
                    f"| {piece.model} | {piece.layers} ({piece.dense_layers}+{piece.moe_layers}) | {method} "
                    f"| {'on' if on else 'off'} | {seq_len:,} | {gib:.1f} | {fits} | {low:,.0f}-{high:,.0f} "
                    f"| {p.flops_per_token / 1e9:.1f} |"
                )
    return rows
