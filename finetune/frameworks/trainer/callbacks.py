"""Trainer callbacks every run gets, whichever framework trains it (both build on the Hugging Face Trainer).

The entry modules (`llamafactory/entry.py`, `swift/entry.py`) add these to the framework's trainer; each callback
is a small class of its own module so that features stay independent.
"""

from __future__ import annotations


def trainer_callbacks() -> list:
    """Fresh callback instances for one training process."""
    from finetune.frameworks.trainer.graceful_stop import GracefulStop, end_stopped_runs_after_train
    from finetune.frameworks.trainer.progress import Progress
    from finetune.tracking.callback import RunTracking

    end_stopped_runs_after_train()

    return [GracefulStop(), RunTracking(), Progress()]
