"""`finetune status RUN_DIR`: how a run stands (running, stopped, finished, failed) and what to do next."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.launch.checkpoints import latest_complete
from finetune.launch.run_state import RunState, State, launcher_alive, read_state
from finetune.launch.rundir import OUTPUT_NAME, launch_record_path


@dataclass(frozen=True)
class RunStatus:
    run_dir: Path
    recipe: str
    state: RunState | None  # None: no state recorded (no attempt got as far as starting)
    launcher_gone: bool  # recorded as running, but its launcher no longer runs on this host
    newest_checkpoint: Path | None

    @property
    def resumable(self) -> bool:
        return self.newest_checkpoint is not None and (self.state is None or self.state.state is not State.FINISHED)

    def as_dict(self) -> dict:
        state = None if self.state is None else {**asdict(self.state), "state": self.state.state.value}
        return {
            "run_dir": str(self.run_dir),
            "recipe": self.recipe,
            "state": state,
            "launcher_gone": self.launcher_gone,
            "newest_checkpoint": None if self.newest_checkpoint is None else str(self.newest_checkpoint),
            "resumable": self.resumable,
        }


def run_status(run_dir: Path) -> RunStatus:
    run_dir = Path(run_dir).expanduser().resolve()
    record = launch_record_path(run_dir, 0)
    if not record.is_file():
        raise FinetuneError(f"{run_dir}: no {record.name} there; is it a run directory written by `finetune launch`?")
    try:
        state = read_state(run_dir)
    except ValueError as error:
        raise FinetuneError(str(error)) from error
    gone = state is not None and state.state is State.RUNNING and launcher_alive(state) is False
    checkpoint, _ = latest_complete(run_dir / OUTPUT_NAME)
    return RunStatus(run_dir, json.loads(record.read_text())["recipe"], state, gone, checkpoint)


def describe(status: RunStatus) -> str:
    s = status.state
    lines = [f"run directory: {status.run_dir}", f"recipe: {status.recipe}"]
    if s is None:
        lines.append("state: not recorded (no attempt started training)")
    else:
        where = f"attempt {s.attempt}, {s.updated} on {s.host}"
        if s.state is State.STOPPED:
            lines.append(f"state: stopped at step {s.step} on request ({where}); {s.checkpoint} holds it")
        elif s.state is State.FINISHED:
            lines.append(f"state: finished at step {s.step} ({where})")
        elif s.state is State.FAILED:
            detail = f": {s.detail}" if s.detail else ""
            lines.append(f"state: failed with exit code {s.exit_code} ({where}){detail}")
        elif status.launcher_gone:
            lines.append(
                f"state: recorded as running, but its launcher (pid {s.pid}) is gone: it ended without recording how "
                f"(killed?) ({where})"
            )
        else:
            lines.append(f"state: running ({where}, launcher pid {s.pid})")
    newest = status.newest_checkpoint
    lines.append(f"newest complete checkpoint: {newest.relative_to(status.run_dir) if newest else 'none'}")
    if status.resumable and not (s is not None and s.state is State.RUNNING and not status.launcher_gone):
        lines.append(f"next: finetune launch --resume {status.run_dir}")
    return "\n".join(lines)
