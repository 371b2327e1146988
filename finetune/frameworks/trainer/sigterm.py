"""The trainers take SIGTERM back: the launcher starts torchrun with SIGTERM blocked, and its workers inherit that.

Slurm's preemption and `scancel` send SIGTERM to every process of the job step at once. torchrun answers it by
signalling its workers and killing them about 30 s later, however long the step and the checkpoint take; with
SIGTERM blocked it never sees the signal, and each worker, which unblocks it here first thing, stops at the end
of its step with a complete checkpoint (graceful_stop.py) and exits, after which torchrun ends as for a finished run.
"""

from __future__ import annotations

import signal


def unblock_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
