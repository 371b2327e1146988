"""The messages around a run: the hint that uploads an offline run, the note before DeepSpeed compiles."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pytest

from finetune.launch.plan import LaunchRequest, plan_launch
from finetune.launch.run import deepspeed_compile_note, sync_hint
from finetune.tracking.settings import TrackingFlags

RECIPE = "llamafactory/glm45-air_lora_4xh100"


def _plan(tmp_path, **flags):
    req = LaunchRequest(
        recipe=RECIPE,
        run_dir=tmp_path / "run",
        nnodes=1,
        nproc_per_node=1,
        tracking=TrackingFlags(**flags) if flags else None,
    )
    return plan_launch(req, check=False)


def test_offline_run_ends_with_finetune_sync(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    plan = _plan(tmp_path, project="p", mode="offline")
    assert sync_hint(plan) == f"wandb: logged offline; upload it with `finetune sync {plan.run_dir}`"
    assert sync_hint(replace(plan, topology=replace(plan.topology, node_rank=1))) is None  # node 0 says it once


@pytest.mark.parametrize("flags", [{}, {"project": "p", "mode": "online"}, {"disabled": True}])
def test_no_sync_hint_unless_offline(tmp_path, monkeypatch, flags):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert sync_hint(_plan(tmp_path, **flags)) is None


def test_each_framework_builds_its_extensions_in_its_own_folder(tmp_path):
    lf = _plan(tmp_path).env["TORCH_EXTENSIONS_DIR"]
    swift = plan_launch(
        LaunchRequest(recipe="swift/glm45-air_lora_4xh100", run_dir=tmp_path / "s", nnodes=1, nproc_per_node=1),
        check=False,
    ).env["TORCH_EXTENSIONS_DIR"]
    assert lf.endswith("/torch_extensions/llamafactory") and swift.endswith("/torch_extensions/swift")


def test_compile_note_only_when_the_cpu_op_is_not_built(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no nvidia-smi: a CPU machine
    plan = _plan(tmp_path)
    folder = tmp_path / "ext"
    plan = replace(plan, env={**plan.env, "TORCH_EXTENSIONS_DIR": str(folder)})
    assert "compiles its CPU communication op" in deepspeed_compile_note(plan)
    (folder / "deepspeed_shm_comm").mkdir(parents=True)
    (folder / "deepspeed_shm_comm" / "deepspeed_shm_comm.so").write_bytes(b"")
    assert deepspeed_compile_note(plan) is None
    no_deepspeed = replace(
        plan,
        env={**plan.env, "TORCH_EXTENSIONS_DIR": str(tmp_path / "none")},
        config={**plan.config, "deepspeed": None},
    )
    assert deepspeed_compile_note(no_deepspeed) is None


def test_a_launch_that_never_met_its_nodes_says_what_it_left(tmp_path):
    from finetune.launch.execute import _untouched

    assert _untouched(tmp_path / "new") == (
        f"Nothing was written: {tmp_path / 'new'} was not created; the same command starts the job again."
    )
    (tmp_path / "old").mkdir()
    for name in ("config.yaml", "output", "state.json"):
        (tmp_path / "old" / name).touch()
    assert (
        _untouched(tmp_path / "old") == f"{tmp_path / 'old'} is as it was (3 entries: config.yaml, output, state.json)."
    )
