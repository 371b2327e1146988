"""Trainer callbacks every run gets, whichever framework trains it (both build on the Hugging Face Trainer).

The entry modules (`llamafactory/entry.py`, `swift/entry.py`) add these to the framework's trainer; each callback
is a small class of its own module so that features stay independent.
"""

from __future__ import annotations

import importlib
import os

CALLBACKS_ENV = "FINETUNE_CALLBACKS"  # more callbacks of your own: "package.module:Class[,package.module:Class]"


def extra_callbacks(spec: str) -> list:
    """Instances of the `module:Class` callbacks `spec` names (comma-separated), each built without arguments."""
    found = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        module, _, name = item.partition(":")
        try:
            found.append(getattr(importlib.import_module(module), name)())
        except (ImportError, AttributeError, ValueError) as error:
            raise SystemExit(f"{CALLBACKS_ENV}={spec}: cannot load {item!r} as module:Class ({error})") from error
    return found


def trainer_callbacks() -> list:
    """Fresh callback instances for one training process, then those FINETUNE_CALLBACKS names."""
    from finetune.frameworks.trainer.graceful_stop import GracefulStop, end_stopped_runs_after_train
    from finetune.frameworks.trainer.progress import Progress
    from finetune.frameworks.trainer.trained_rows import TrainedRows
    from finetune.tracking.callback import RunTracking

    end_stopped_runs_after_train()
    callbacks = [GracefulStop(), TrainedRows(), RunTracking(), Progress()]  # rows recorded before wandb gets them
    return [*callbacks, *extra_callbacks(os.environ.get(CALLBACKS_ENV, ""))]
