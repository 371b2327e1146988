"""Stop on request with a complete checkpoint of the last step: SIGTERM, or the launcher's stop file.

The launcher turns Slurm's pre-timeout signal, `scancel` or Ctrl-C into a stop file; a worker that gets SIGTERM
itself counts too. At the end of every step the ranks agree (one all-reduce of a flag), so all of them save the
same step and stop together, instead of some waiting in a collective for the others. The checkpoint is then
whole and `finetune launch --resume` continues from it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from transformers import TrainerCallback


class GracefulStop(TrainerCallback):
    def __init__(self) -> None:
        self.signalled = False
        stop = os.environ.get("FINETUNE_STOP_FILE")
        self.stop_file = Path(stop) if stop else None

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
        if self._requested_anywhere(args):
            if state.is_world_process_zero:
                print(f"stop requested: saving checkpoint-{state.global_step} and stopping", flush=True)
            control.should_save = True
            control.should_training_stop = True
        return control
