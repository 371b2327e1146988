"""Stopping a child and everything it started: the child leads its own process group, and each signal of an
escalation goes to the whole group until it is gone."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_group(proc: subprocess.Popen, escalation: tuple[tuple[signal.Signals, float], ...]) -> None:
    """Send each (signal, seconds to wait) in turn to `proc`'s process group; stop as soon as `proc` has exited."""
    for sig, wait in escalation:
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
