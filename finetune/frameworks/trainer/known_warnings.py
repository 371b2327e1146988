"""Warnings the pinned stack prints in every run although nothing is wrong, silenced in the trainers only.

Each entry names the exact message and why it is harmless; any other warning still shows (and every line the
frameworks print stays in the run's log). Re-check the list when a pin changes: a message that no longer
appears is dead weight, one that starts to matter must go.
"""

from __future__ import annotations

import warnings

KNOWN = (
    (
        FutureWarning,
        r"`torch\.distributed\.(reduce_scatter_tensor|all_gather_into_tensor)` is deprecated",
        "DeepSpeed 0.19.8's ZeRO calls torch's older collective names, once per bucket and step; they still work "
        "in torch 2.13",
    ),
    (
        UserWarning,
        r"'pin_memory' argument is set as true but no accelerator is found",
        "the data loader's pinned memory only matters with a GPU; on a CPU machine it is simply not used",
    ),
)


def filter_known_warnings() -> None:
    for category, message, _why in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category)
