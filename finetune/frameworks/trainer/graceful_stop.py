"""Stop on request with a complete checkpoint of the last step: SIGTERM, or the launcher's stop file.

The launcher turns Slurm's pre-timeout signal, `scancel` or Ctrl-C into a stop file; a worker that gets SIGTERM
itself counts too. At the end of every step the ranks agree (one all-reduce of a flag), so all of them save the
same step and stop together, instead of some waiting in a collective for the others. The checkpoint is then
whole and `finetune launch --resume` continues from it.

A stopped run is not a finished one: when `Trainer.train` returns after such a stop, global rank 0 leaves the stop
marker (finetune/launch/run_state.py) and every rank ends its process there, before the framework writes its final
model, metrics or plots into the output folder as it does for a completed run. A request that arrives at the very
last step changes nothing: that run finishes.
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

from transformers import Trainer, TrainerCallback

from finetune.frameworks.trainer.sigterm import unblock_sigterm
from finetune.launch.run_state import StopMarker, write_stop_marker


class GracefulStop(TrainerCallback):
    def __init__(self) -> None:
        self.signalled = False
        stop = os.environ.get("FINETUNE_STOP_FILE")
        self.stop_file = Path(stop) if stop else None
        self.stopping_at: int | None = None  # the step after which the ranks agreed to stop
        self.saved: Path | None = None  # the checkpoint that stop saved
        signal.signal(signal.SIGTERM, self._on_sigterm)  # from the start: a SIGTERM while loading counts too
        unblock_sigterm()

    def on_train_begin(self, args, state, control, **kwargs):
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self.signalled = True

    def _requested_anywhere(self, args) -> bool:
        local = self.signalled or (self.stop_file is not None and self.stop_file.exists())
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return local
        import torch

        device = args.device if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([1.0 if local else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def on_step_end(self, args, state, control, **kwargs):
        if self._requested_anywhere(args) and state.global_step < state.max_steps:
            if state.is_world_process_zero:
                print(f"stop requested: saving checkpoint-{state.global_step} and stopping", flush=True)
            control.should_save = True
            control.should_training_stop = True
            self.stopping_at = state.global_step
        return control

    def on_save(self, args, state, control, **kwargs):
        if self.stopping_at is not None and state.global_step == self.stopping_at:
            self.saved = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        return control

    def end_stopped_process(self, is_world_zero: bool) -> None:
        """After `train` returned from a stop: rank 0 names the checkpoint, then all ranks exit together."""
        import torch.distributed as dist

        run_dir = os.environ.get("FINETUNE_RUN_DIR")
        if is_world_zero and run_dir:
            checkpoint = os.path.relpath(self.saved, run_dir)
            write_stop_marker(Path(run_dir), StopMarker(step=self.stopping_at, checkpoint=checkpoint))
            print(f"stopped at step {self.stopping_at}: {checkpoint} holds it; no final output written", flush=True)
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # the marker exists before any rank's exit ends torchrun
        try:
            import wandb

            if wandb.run is not None:
                wandb.run.mark_preempting()  # wandb shows the run as preempted, to be resumed, not as done
        except ImportError:
            pass
        raise SystemExit(0)


def _stop_after_train(train):
    @functools.wraps(train)
    def wrapped(self, *args, **kwargs):
        result = train(self, *args, **kwargs)
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, GracefulStop) and callback.saved is not None:
                callback.end_stopped_process(self.is_world_process_zero())
        return result

    wrapped.ends_stopped_runs = True
    return wrapped


def end_stopped_runs_after_train() -> None:
    """Make `Trainer.train` (the frameworks' trainers inherit it) end the process after a stop on request."""
    if not getattr(Trainer.train, "ends_stopped_runs", False):
        Trainer.train = _stop_after_train(Trainer.train)
