"""The state of a run in one file, `state.json`, that `finetune status` reads: running, stopped, finished or failed.

Node 0's launcher writes it when an attempt starts and when it ends. A stop on request (a signal, Slurm's
pre-timeout USR1, Ctrl-C) is not a finish: the trainers save a checkpoint, global rank 0 leaves `stopped.json`
naming it, no final output is written, and the launcher exits with STOPPED_EXIT, so that schedulers and scripts
tell a resumable stop from a finished run (0) or a failure (any other code).

Standard library only: the trainers import this module inside the frameworks' environments.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

STATE_NAME = "state.json"
STOP_MARKER_NAME = "stopped.json"
STOPPED_EXIT = 75  # EX_TEMPFAIL (sysexits.h): "try again later", here `finetune launch --resume`


class State(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class RunState:
    state: State
    attempt: int
    step: int | None = None  # stopped: the step its checkpoint holds; finished: the last step trained
    checkpoint: str | None = None  # stopped: the checkpoint folder the stop saved, relative to the run directory
    exit_code: int | None = None
    detail: str = ""
    host: str = ""
    pid: int | None = None  # the launcher that wrote it (a running state whose launcher is gone ended unrecorded)
    updated: str = ""


def _write_json(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a file, even when the writer is killed."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)


def write_state(run_dir: Path, state: RunState) -> RunState:
    stamped = RunState(
        **{
            **asdict(state),
            "host": state.host or socket.gethostname(),
            "pid": state.pid or os.getpid(),
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    _write_json(Path(run_dir) / STATE_NAME, {**asdict(stamped), "state": stamped.state.value})
    return stamped


def read_state(run_dir: Path) -> RunState | None:
    path = Path(run_dir) / STATE_NAME
    try:
        data = json.loads(path.read_text())
        return RunState(**{**data, "state": State(data["state"])})
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: not a run state ({error}); it is written by `finetune launch`") from error


def unfinished_state(run_dir: Path) -> RunState | None:
    """The recorded state of a run that has not finished; None for a finished run or one with no record (a run
    from before state.json, whose output is taken as it is)."""
    state = read_state(run_dir)
    return state if state is not None and state.state is not State.FINISHED else None


@dataclass(frozen=True)
class StopMarker:
    """What the trainers leave when they stopped on request: the step and the checkpoint that holds it."""

    step: int
    checkpoint: str  # relative to the run directory


def write_stop_marker(run_dir: Path, marker: StopMarker) -> None:
    _write_json(Path(run_dir) / STOP_MARKER_NAME, asdict(marker))


def read_stop_marker(run_dir: Path) -> StopMarker | None:
    try:
        return StopMarker(**json.loads((Path(run_dir) / STOP_MARKER_NAME).read_text()))
    except FileNotFoundError:
        return None


def clear_stop_marker(run_dir: Path) -> None:
    """An earlier attempt's stop is not this one's."""
    (Path(run_dir) / STOP_MARKER_NAME).unlink(missing_ok=True)


def launcher_alive(state: RunState) -> bool | None:
    """Whether the launcher that wrote `state` still runs; None when it ran on another host (cannot tell)."""
    if state.host != socket.gethostname() or state.pid is None:
        return None
    try:
        os.kill(state.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
