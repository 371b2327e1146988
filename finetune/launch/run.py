"""Everything `finetune launch` does after planning, in the order it does it: the planner's gate, the format
check, the messages, the run on this node and its verdict. `finetune demo` goes through this very path.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from finetune.catalog import MAX_DROPPED_ROWS
from finetune.errors import FinetuneError, say
from finetune.launch.execute import execute
from finetune.launch.lengths import check_lengths, trained_rows_line
from finetune.launch.plan import LaunchPlan
from finetune.launch.run_state import STOPPED_EXIT, read_stop_marker

FORMAT_SAMPLE_ROWS = 200  # rows of the dataset the launch's format check renders (all of a smaller one)


@dataclass(frozen=True)
class LaunchOptions:
    gpu: str | None = None  # GPU type for the memory check (None: what nvidia-smi reports, else the recipe's)
    force: bool = False  # launch although the planner says it does not fit
    skip_format_check: bool = False
    verbose: bool = False  # show the frameworks' full output, not only progress lines (the log has it always)
    stop_grace: float | None = None  # seconds to checkpoint after a stop request (None: as long as it takes)
    max_dropped_rows: float = MAX_DROPPED_ROWS  # share of training rows the framework may delete for length


def check_memory(plan: LaunchPlan, options: LaunchOptions) -> None:
    """Refuse (before anything starts, dry runs too) a recipe the planner says does not fit this cluster."""
    from finetune.planner import check_fits

    gpu = options.gpu or detected_gpu()
    try:
        fit = check_fits(plan, gpu=gpu)
    except FinetuneError as exc:
        if not options.force:
            raise
        print(f"warning: --force: launching although the planner says it does not fit:\n{exc}", file=sys.stderr)
        return
    if fit is None:  # a local model whose config the planner does not know
        from finetune.planner import trained_config

        print(f"memory: not planned ({trained_config(plan)[1]})", file=sys.stderr)
        return
    print(
        f"memory: {fit.required_gib:.1f} of {fit.capacity_gib:.1f} GiB per {fit.gpu.name} (planner, {fit.model}); "
        f"longest sequence {fit.max_seq_len:,} tokens",
        file=sys.stderr,
    )


def detected_gpu() -> str | None:
    """The catalog key of this node's GPUs as nvidia-smi reports them (the first one's), when it knows them: the
    memory check plans the cluster the run is on, not the one the recipe was written for."""
    from finetune.launch.doctor import gpus
    from finetune.planner.gpus import gpu_key_for

    found = gpus()
    if not found:
        return None
    key = gpu_key_for(*found[0])
    if key is None:
        print(
            f"warning: GPU {found[0][0]!r} is not in the planner's catalog; checking memory for the recipe's",
            file=sys.stderr,
        )
    return key


def check_format(plan: LaunchPlan, options: LaunchOptions) -> None:
    """Refuse a run whose trained tokens differ from the model's own format (finetune check-format): the format
    cases, and a sample of the dataset it trains, rendered by the framework as training renders them, against the
    chat template of the model it trains (its folder's own, else the official one the replica carries)."""
    from finetune.glm.format_check import FormatRequest, check_formats
    from finetune.prepare.datasets import load_prepared

    if options.skip_format_check:
        print("warning: --skip-format-check: the training format was NOT compared with the model's", file=sys.stderr)
        return
    template, source = reference_template(plan)
    requests = [FormatRequest(plan.recipe, plan.config, tokenizer_dir=template)]
    if plan.dataset_root is not None:
        dataset = load_prepared(plan.dataset_root)
        requests.append(FormatRequest(plan.recipe, plan.config, dataset, template, limit=FORMAT_SAMPLE_ROWS))
    reports = check_formats(requests)
    mismatched = [r for r in reports if r.trained_mismatch]
    if mismatched:
        text = "\n".join(r.summary() for r in mismatched)
        raise FinetuneError(f"{text}\n(against {source}; --skip-format-check launches anyway)")
    for report in reports:
        print(report.summary(), file=sys.stderr)
    print(f"format: compared with {source}", file=sys.stderr)


def reference_template(plan: LaunchPlan) -> tuple[Path, str]:
    """The tokenizer folder whose chat template the training text must equal, and how to say which it is: the
    `--model` folder when it has a chat template of its own, else the replica's copy of the official one."""
    from finetune.glm.format_check import reference_replica

    folder = Path(plan.model)
    if folder.is_dir() and has_chat_template(folder):
        return folder, f"{folder}'s own chat template"
    return reference_replica(plan.recipe.meta.model), f"the official {plan.recipe.meta.model} chat template"


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file():
        return True
    config = folder / "tokenizer_config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))


def run(plan: LaunchPlan, options: LaunchOptions) -> int:
    """Check, start and watch the planned launch on this node; the exit code of its training."""
    from finetune.launch.nvme import check_nvme
    from finetune.launch.plan import DEEPSPEED_NAME

    check_nvme(plan.files.get(DEEPSPEED_NAME), f"{plan.recipe.id}'s DeepSpeed config")
    # a resume trains what the first attempt accepted: its length limit was checked then
    plan = check_lengths(plan, options.max_dropped_rows if plan.attempt == 0 else 1.0)
    check_format(plan, options)
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if plan.resume_from is not None:
        for skipped in plan.skipped_checkpoints:
            print(f"skipping incomplete {skipped.path.name}: {skipped.reason}", flush=True)
        print(f"resuming from {plan.resume_from} (attempt {plan.attempt})", flush=True)
    print(f"run directory: {plan.run_dir}\ncommand: {plan.command}", flush=True)
    note = deepspeed_compile_note(plan)
    if note:
        say(note)
    code = execute(plan, verbose=options.verbose, stop_grace=options.stop_grace)
    rows = trained_rows_line(plan)
    if rows:
        print(rows, flush=True)
    print(f"{plan.recipe.id} {outcome(plan, code)}", flush=True)
    hint = sync_hint(plan)
    if hint:
        print(hint, flush=True)
    return code


def outcome(plan: LaunchPlan, code: int) -> str:
    """The launcher's last word on the attempt: finished, stopped (and how to go on) or failed."""
    if code == STOPPED_EXIT:
        marker = read_stop_marker(plan.run_dir)
        return (
            f"stopped at step {marker.step} ({marker.checkpoint} holds it; exit code {STOPPED_EXIT}); resume with "
            f"`finetune launch --resume {plan.run_dir}`"
        )
    if code == 0:
        return f"finished; run directory: {plan.run_dir}"
    return f"failed with exit code {code}; run directory: {plan.run_dir} (`finetune status {plan.run_dir}`)"


def deepspeed_compile_note(plan: LaunchPlan) -> str | None:
    """Say so when DeepSpeed will compile its CPU communication op before the first step (./setup.sh builds it;
    a new cache folder or a removed build means a silent minute or two otherwise)."""
    if shutil.which("nvidia-smi") or not plan.config.get(plan.framework.deepspeed_key()):
        return None
    folder = Path(plan.env.get("TORCH_EXTENSIONS_DIR") or os.environ.get("TORCH_EXTENSIONS_DIR", ""))
    if not folder.name or any(folder.glob("deepspeed_shm_comm/*.so")):
        return None
    return f"DeepSpeed compiles its CPU communication op first (once, 1-2 minutes; kept in {folder})..."


def sync_hint(plan: LaunchPlan) -> str | None:
    """What uploads an offline run: `finetune sync RUN_DIR`, which finds every attempt's wandb folder (wandb's own
    closing line names `wandb sync` on this attempt's folder only)."""
    if plan.tracking.env.get("WANDB_MODE") != "offline" or plan.topology.node_rank != 0:
        return None
    return f"wandb: logged offline; upload it with `finetune sync {plan.run_dir}`"
