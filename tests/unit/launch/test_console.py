"""What a running launch shows: progress lines and stop messages by default, the log's tail when it fails."""

from __future__ import annotations

import json

from finetune.frameworks.trainer.progress_line import PREFIX, format_progress
from finetune.launch.console import QuietConsole


def _progress(step: int, **extra) -> bytes:
    record = {"step": step, "max_steps": 20, "loss": 1.23456, "tokens_per_s": 1234.5, "eta_s": 75.4, **extra}
    return (PREFIX + json.dumps(record)).encode()


def test_progress_line_reads_step_loss_tokens_and_eta():
    assert format_progress(_progress(5).decode()) == "  step 5/20, loss 1.2346, 1,234 tokens/s, ETA 1:15"
    assert format_progress(_progress(1, tokens_per_s=None, eta_s=None).decode()) == "  step 1/20, loss 1.2346"
    assert format_progress("{'loss': 1.2}") is None and format_progress(PREFIX + "{broken") is None


def test_quiet_console_shows_progress_and_stops_and_nothing_else():
    console = QuietConsole()
    bar = b"\r  5%|###       | 1/20 [00:04<01:16,  4.02s/it]"  # tqdm draws the bar without a newline
    stream = [b"[INFO] loading the model\nFutureWarning: something harm", b"less\n", bar + _progress(1)[:30]]
    stream += [_progress(1)[30:] + b"\n", b"stop requested: saving checkpoint-1 and stopping\n{'loss': 1.2}\n"]
    shown = b"".join(console.feed(stream)).decode()
    assert (
        shown
        == "  step 1/20, loss 1.2346, 1,234 tokens/s, ETA 1:15\nstop requested: saving checkpoint-1 and stopping\n"
    )


def test_a_line_without_newline_at_the_end_is_still_read():
    assert b"".join(QuietConsole().feed([_progress(2)])).startswith(b"  step 2/20")


def test_failure_shows_the_tail_of_the_log():
    console = QuietConsole()
    lines = [f"line {i}".encode() for i in range(100)] + [b"Traceback (most recent call last):", b"ValueError: bad"]
    shown = b"".join(console.feed([b"\n".join(lines) + b"\n"]))
    assert shown == b"Traceback (most recent call last):\n"
    report = console.failure_report("logs/node0.log").decode().splitlines()
    assert report[0] == "last lines of logs/node0.log:" and report[-1] == "  ValueError: bad"
    assert len(report) == 41 and report[1] == "  line 62"


def test_the_tail_keeps_the_last_state_of_a_redrawn_progress_bar():
    console = QuietConsole()
    list(console.feed([b"\r 10%|#   | 2/20\r 15%|#   | 3/20\n"]))
    assert console.failure_report("log").decode().splitlines()[-1] == "   15%|#   | 3/20"
