"""One progress line per logging step, from the global rank 0 trainer: step, loss, tokens per second, ETA.

The launcher shows these lines while a run goes and keeps the frameworks' own output in `logs/` (`-v` shows it
too); the line is a prefix and JSON, so the launcher reads it without parsing any framework's log format. The
trainer counts tokens only when `include_num_input_tokens_seen` is on: this callback turns it on (non-padding
tokens, on every rank alike, before the first batch) when the config left it off.
"""

from __future__ import annotations

import json
import time

from transformers import TrainerCallback

from finetune.frameworks.trainer.progress_line import PREFIX


def _counts_tokens(args) -> bool:
    return getattr(args, "include_num_input_tokens_seen", "no") not in ("no", False, None)


class Progress(TrainerCallback):
    def __init__(self) -> None:
        self._start: tuple[float, int, int] | None = None  # (time, step, tokens seen) when training began

    def on_train_begin(self, args, state, control, **kwargs):
        if not _counts_tokens(args):
            args.include_num_input_tokens_seen = "non_padding"
        self._start = (time.monotonic(), state.global_step, int(state.num_input_tokens_seen))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self._start is None or not logs or "loss" not in logs:
            return
        began, first_step, first_tokens = self._start
        elapsed = time.monotonic() - began
        steps = state.global_step - first_step
        record = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "loss": logs["loss"],
            "tokens_per_s": (int(state.num_input_tokens_seen) - first_tokens) / elapsed if elapsed > 0 else None,
            "eta_s": elapsed / steps * (state.max_steps - state.global_step) if steps > 0 else None,
        }
        print(PREFIX + json.dumps(record), flush=True)
