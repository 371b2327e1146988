"""Stop is not finish: the run's recorded state, `finetune status`, and what a stopped or finished run refuses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from finetune.errors import FinetuneError
from finetune.launch.run_state import (
    STOPPED_EXIT,
    RunState,
    State,
    StopMarker,
    read_state,
    write_state,
    write_stop_marker,
)
from finetune.serving.export import export_run
from tests.conftest import run_cli

RECIPE = "llamafactory/glm45-air_lora_4xh100"


def _run_dir(tmp_path, *, checkpoint_step: int | None = 7):
    """A run directory as `finetune launch` leaves it: the launch record, the config, a complete checkpoint."""
    run = tmp_path / "run"
    (run / "output").mkdir(parents=True)
    (run / "launch-node0.json").write_text(json.dumps({"recipe": RECIPE, "framework": "llamafactory", "model": "m"}))
    (run / "config.yaml").write_text("finetuning_type: lora\n")
    if checkpoint_step is not None:
        checkpoint = run / "output" / f"checkpoint-{checkpoint_step}"
        checkpoint.mkdir()
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": checkpoint_step}))
        save_file({"w": torch.zeros(2)}, str(checkpoint / "adapter_model.safetensors"))
        (checkpoint / "adapter_config.json").write_text("{}")
        (checkpoint / "optimizer.pt").write_bytes(b"state")
    return run


def test_state_is_written_whole_and_read_back(tmp_path):
    written = write_state(tmp_path, RunState(State.STOPPED, 1, step=7, checkpoint="output/checkpoint-7", exit_code=75))
    assert read_state(tmp_path) == written and written.host and written.pid and written.updated
    assert json.loads((tmp_path / "state.json").read_text())["state"] == "stopped"
    assert not list(tmp_path.glob(".*partial"))
    (tmp_path / "state.json").write_text('{"state": "paused"}')
    with pytest.raises(ValueError, match=r"state.json: not a run state"):
        read_state(tmp_path)


def test_status_of_a_stopped_run_names_its_checkpoint_and_the_resume(tmp_path):
    run = _run_dir(tmp_path)
    write_state(run, RunState(State.STOPPED, 0, step=7, checkpoint="output/checkpoint-7", exit_code=STOPPED_EXIT))
    out = run_cli("status", str(run))
    assert out.returncode == 0, out.stderr
    assert "state: stopped at step 7 on request (attempt 0" in out.stdout
    assert "newest complete checkpoint: output/checkpoint-7" in out.stdout
    assert f"next: finetune launch --resume {run}" in out.stdout
    data = json.loads(run_cli("status", str(run), "--json").stdout)
    assert (data["state"]["state"], data["resumable"]) == ("stopped", True)


def test_status_tells_a_running_run_from_one_whose_launcher_is_gone(tmp_path):
    run = _run_dir(tmp_path)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_state(run, RunState(State.RUNNING, 0, pid=alive.pid))
        out = run_cli("status", str(run)).stdout
        assert "state: running (attempt 0" in out and "next:" not in out  # no resume while it runs
    finally:
        alive.kill()
        alive.wait()
    out = run_cli("status", str(run)).stdout
    assert f"its launcher (pid {alive.pid}) is gone" in out and "next: finetune launch --resume" in out


def test_status_of_something_that_is_not_a_run(tmp_path):
    out = run_cli("status", str(tmp_path))
    assert out.returncode == 2 and "no launch-node0.json there" in out.stderr


def test_a_finished_run_is_not_resumed(tmp_path):
    run = _run_dir(tmp_path, checkpoint_step=12)
    write_state(run, RunState(State.FINISHED, 0, step=12, exit_code=0))
    out = run_cli("launch", "--resume", str(run), "--dry-run")
    assert out.returncode == 2
    assert "the run finished at step 12 (attempt 0" in out.stderr and "nothing to continue" in out.stderr
    assert "next:" not in run_cli("status", str(run)).stdout


def test_export_refuses_a_run_that_did_not_finish(tmp_path):
    run = _run_dir(tmp_path)
    (run / "output" / "adapter_config.json").write_text("{}")  # a stray top-level adapter must not pass as final
    write_state(run, RunState(State.STOPPED, 0, step=7, checkpoint="output/checkpoint-7", exit_code=STOPPED_EXIT))
    with pytest.raises(FinetuneError, match=r"has not finished .*stopped at step 7.*--unfinished"):
        export_run(run)


def test_outcome_of_a_stopped_attempt_says_where_and_how_to_go_on(tmp_path):
    from finetune.launch.plan import LaunchRequest, plan_launch
    from finetune.launch.run import outcome

    plan = plan_launch(LaunchRequest(recipe=RECIPE, run_dir=tmp_path / "r", nnodes=1, nproc_per_node=1), check=False)
    plan.run_dir.mkdir()
    write_stop_marker(plan.run_dir, StopMarker(step=3, checkpoint="output/checkpoint-3"))
    assert outcome(plan, STOPPED_EXIT) == (
        f"stopped at step 3 (output/checkpoint-3 holds it; exit code 75); resume with "
        f"`finetune launch --resume {plan.run_dir}`"
    )
    assert outcome(plan, 0).startswith("finished")
    assert outcome(plan, 1).startswith("failed with exit code 1")


def test_resume_existing_starts_resumes_or_leaves_a_finished_run_alone(tmp_path):
    from finetune.launch.resume import existing_run

    assert existing_run(tmp_path / "none", RECIPE) == "start"
    run = _run_dir(tmp_path)
    assert existing_run(run, RECIPE) == "resume"
    with pytest.raises(FinetuneError, match=r"holds a run of llamafactory/glm45-air_lora_4xh100, not swift/"):
        existing_run(run, "swift/glm45-air_lora_4xh100")
    write_state(run, RunState(State.FINISHED, 0, step=7, exit_code=0))
    out = run_cli("launch", RECIPE, "--run-dir", str(run), "--resume-existing")
    assert out.returncode == 0 and "holds a finished run" in out.stdout
    no_dir = run_cli("launch", RECIPE, "--resume-existing", "--dry-run")
    assert no_dir.returncode == 2 and "--resume-existing needs a recipe and --run-dir" in no_dir.stderr


def test_a_megatron_run_is_not_half_resumed(tmp_path):
    run = _run_dir(tmp_path)
    record = json.loads((run / "launch-node0.json").read_text())
    megatron = {**record, "recipe": "swift/glm45-air_lora_megatron_4xh100", "framework": "swift"}
    (run / "launch-node0.json").write_text(json.dumps(megatron))
    out = run_cli("launch", "--resume", str(run), "--dry-run")
    assert out.returncode == 2 and "trains with Megatron-SWIFT, whose checkpoints the launcher cannot" in out.stderr
