"""What a cluster or a user's code does to a run, as trainer callbacks for tests (through FINETUNE_CALLBACKS): a
step that outlasts torchrun's own grace once a stop is requested, a crash right after a checkpoint was saved, a
print of the secrets in the environment."""

from __future__ import annotations

import os
import time
from pathlib import Path

from transformers import TrainerCallback

SECONDS_ENV = "SLOW_STEP_S"


class SlowStepAfterStopRequest(TrainerCallback):
    """Once a stop is requested, the step takes longer than torchrun's own ~30 s grace, as a step plus checkpoint
    of a large model does on a real cluster."""

    def __init__(self) -> None:
        self.slept = False
        self.seconds = float(os.environ.get(SECONDS_ENV, "40"))
        stop = os.environ.get("FINETUNE_STOP_FILE")
        self.stop_file = Path(stop) if stop else None

    def on_step_end(self, args, state, control, **kwargs):
        if not self.slept and self.stop_file is not None and self.stop_file.exists():
            self.slept = True
            if state.is_world_process_zero:
                print(f"slow step: {self.seconds:g} s before the checkpoint", flush=True)
            time.sleep(self.seconds)
        return control


class CrashAfterFirstSave(TrainerCallback):
    """Every rank dies at once right after the first checkpoint is written (a node lost, the job killed)."""

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's shards are on disk
        os._exit(1)


class PrintsSecrets(TrainerCallback):
    """A user's code that prints secrets from its environment (a reward function, a debugging print)."""

    NAMES = ("WANDB_API_KEY", "HF_TOKEN", "MY_SECRET", "DB_PASSWORD")

    def on_train_begin(self, args, state, control, **kwargs):
        print("debug:", " ".join(os.environ.get(name, "") for name in self.NAMES), flush=True)
        return control
