"""Trainer callback of tracked runs: the launch manifest in the wandb config, memory of every rank, tokens/s.

wandb's own system metrics come from the one process that runs wandb (global rank 0), so on a multi-node job
they show one node. At every logging step each rank reports its peak memory (GPU: torch's peak allocation;
CPU-only: the process's peak resident memory) and rank 0 logs them all, `memory/peak_gib_rank<R>` plus
`memory/peak_gib_max`, with the tokens seen and the tokens per second since the previous logging step. The
trainer counts tokens across ranks when `include_num_input_tokens_seen` is on, which the launcher sets for
tracked runs as `true` (all tokens: the only spelling both frameworks' command-line parsers accept); at train
start this callback narrows it to `non_padding`, so padding is not counted. The values go into the same wandb
row as the trainer's loss: they are logged without committing at the end of the step, just before the trainer
logs and commits its own.

Runs inside the framework environments; it does nothing unless the run reports to wandb.
"""

from __future__ import annotations

import json
import os
import resource
import time
from pathlib import Path

from transformers import TrainerCallback

from finetune.tracking import MANIFEST_ENV

GIB = 2**30


def _reports_to_wandb(args) -> bool:
    report_to = args.report_to or []
    if isinstance(report_to, str):
        report_to = [report_to]
    return "wandb" in report_to or "all" in report_to


def _wandb_run():
    try:
        import wandb
    except ImportError:
        return None
    return wandb.run


def peak_memory_gib() -> float:
    """This process's peak memory: allocated on its GPU, or resident in host memory without one."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / GIB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # Linux reports KiB


def gather_from_ranks(value: float) -> list[float]:
    """`value` of every rank, indexed by global rank (every rank must call this at the same point)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [value]
    values: list = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return [float(v) for v in values]


class RunTracking(TrainerCallback):
    def __init__(self) -> None:
        self._manifest_sent = False
        self._mark: tuple[float, int] | None = None  # (time, tokens seen) at the previous logging step

    def on_train_begin(self, args, state, control, **kwargs):
        if not _reports_to_wandb(args):
            return
        if getattr(args, "include_num_input_tokens_seen", "no") == "all":
            args.include_num_input_tokens_seen = "non_padding"  # on every rank alike, before the first batch
        self._mark = (time.monotonic(), state.num_input_tokens_seen)
        if state.is_world_process_zero:
            self._send_manifest()

    def on_step_end(self, args, state, control, **kwargs):
        # control.should_log was set for this step by the trainer's flow callback, alike on every rank
        if not (_reports_to_wandb(args) and control.should_log):
            return
        peaks = gather_from_ranks(peak_memory_gib())
        run = _wandb_run() if state.is_world_process_zero else None
        if run is None:
            return
        self._send_manifest()
        metrics = {f"memory/peak_gib_rank{rank}": round(peak, 4) for rank, peak in enumerate(peaks)}
        metrics["memory/peak_gib_max"] = round(max(peaks), 4)
        metrics.update(self._throughput(args, state))
        run.log(metrics, commit=False)  # committed by the trainer's own wandb row of this step

    def on_train_end(self, args, state, control, **kwargs):
        run = _wandb_run() if _reports_to_wandb(args) and state.is_world_process_zero else None
        if run is not None:
            run.summary["model/path"] = str(self._trained_weights(Path(args.output_dir)))
            self._save_masked_log(run)

    @staticmethod
    def _save_masked_log(run) -> None:
        """The launcher's log of node 0, secrets masked, as the run's console record (wandb's own capture is off)."""
        run_dir = os.environ.get("FINETUNE_RUN_DIR")
        log = Path(run_dir) / "logs" / "node0.log" if run_dir else None
        if log is not None and log.is_file():
            run.save(str(log), base_path=run_dir, policy="end")

    def _throughput(self, args, state) -> dict[str, float]:
        if getattr(args, "include_num_input_tokens_seen", "no") in ("no", False, None) or self._mark is None:
            return {}
        now, tokens = time.monotonic(), int(state.num_input_tokens_seen)
        then, before = self._mark
        self._mark = (now, tokens)
        out = {"train/tokens_seen": tokens}
        if now > then:
            out["train/tokens_per_second"] = round((tokens - before) / (now - then), 2)
        return out

    def _send_manifest(self) -> None:
        """Merge the launch manifest (written by the launcher) into the wandb config, once."""
        run = _wandb_run()
        path = os.environ.get(MANIFEST_ENV)
        if self._manifest_sent or run is None or not path or not Path(path).is_file():
            return
        run.config.update({"launch": json.loads(Path(path).read_text())}, allow_val_change=True)
        self._manifest_sent = True

    @staticmethod
    def _trained_weights(output_dir: Path) -> Path:
        """Where the framework leaves the trained weights (ms-swift: its newest checkpoint folder)."""
        path = os.environ.get(MANIFEST_ENV)
        try:
            framework = json.loads(Path(path).read_text())["framework"] if path else None
            from finetune.frameworks import get_framework

            return get_framework(framework).trained_weights(output_dir, {}) if framework else output_dir
        except Exception:  # only a label in the summary: never fail a finished run over it
            return output_dir
