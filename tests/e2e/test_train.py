"""End to end through `finetune launch`: the GLM-4.5-Air LoRA recipe trains the replica for real.

(a) one process without DeepSpeed, (b) the recipe's own ZeRO-3 JSON under torchrun with two processes (gloo).
Both see the same 2 sequences per step, so their adapters must agree to float32 rounding.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from safetensors.torch import load_file

from finetune.frameworks import get_framework
from finetune.recipes.overrides import format_override
from finetune.recipes.recipe import resolve_recipe
from tests.conftest import run_cli
from tests.helpers.nodes import one_node
from tests.helpers.precheck import precheck

pytestmark = pytest.mark.train
RECIPE = "llamafactory/glm45-air_lora_4xh100"
STEPS = 10


def _launch_args(run_dir: Path, replica: Path, nproc: int, *extra: str) -> list[str]:
    recipe = resolve_recipe(RECIPE)
    overrides = get_framework(recipe.framework).cpu_smoke_overrides(STEPS, recipe.meta)
    args = [RECIPE, "--model", str(replica), "--run-dir", str(run_dir), *one_node(nproc)]
    for key, value in overrides.items():
        args += ["--set", format_override(key, value)]
    return [*args, *extra]


def _launch(run_dir: Path, replica: Path, nproc: int, *extra: str):
    out = run_cli("launch", *_launch_args(run_dir, replica, nproc, *extra), env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _losses(run_dir: Path) -> list[float]:
    log = run_dir / "output" / "trainer_log.jsonl"
    return [row["loss"] for row in map(json.loads, log.read_text().splitlines()) if "loss" in row]


SINGLE = ("--set", "deepspeed=null", "--set", "per_device_train_batch_size=2")


@pytest.fixture(scope="module", autouse=True)
def _checked_together(tmp_path_factory, air_replica):
    """Both launches below through LLaMA-Factory's parser at once (tests/helpers/precheck.py)."""
    run_dir = tmp_path_factory.mktemp("precheck") / "run"
    precheck([_launch_args(run_dir, air_replica, 1, *SINGLE), _launch_args(run_dir, air_replica, 2)])


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, air_replica):
    run_dir = tmp_path_factory.mktemp("e2e") / "single"
    _launch(run_dir, air_replica, 1, *SINGLE)
    return run_dir


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory, air_replica):
    run_dir = tmp_path_factory.mktemp("e2e") / "zero3"
    out = _launch(run_dir, air_replica, 2, "-v")  # -v: the frameworks' whole output on the terminal too
    return run_dir, out


def _assert_learns(losses: list[float]) -> None:
    assert len(losses) == STEPS
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_single_process_trains(single_run):
    _assert_learns(_losses(single_run))
    assert (single_run / "output" / "adapter_model.safetensors").is_file()
    record = json.loads((single_run / "launch-node0.json").read_text())
    assert record["recipe"] == RECIPE and record["overrides"]["deepspeed"] is None
    assert record["command"][-1] == str(single_run / "config.yaml")
    assert (single_run / "logs" / "node0.log").stat().st_size > 0
    # LLaMA-Factory shortens over-length rows, never deletes them: every prepared row is trained, as expected
    dataset = json.loads((single_run / "manifest.json").read_text())["dataset"]
    trained, expected, prepared = (dataset[k]["train"] for k in ("rows_trained", "rows_expected", "rows"))
    assert trained == expected == prepared
    assert dataset["over_length"]["action"] == "truncate_turns"


def test_zero3_two_processes_trains(zero3_run):
    run_dir, out = zero3_run
    _assert_learns(_losses(run_dir))
    assert "world size: 2" in (run_dir / "logs" / "node0.log").read_text()  # LLaMA-Factory's own line
    assert "world size: 2" in out.stdout and "'loss'" in out.stdout  # -v shows what the log holds
    assert json.loads((run_dir / "deepspeed.json").read_text())["zero_optimization"]["stage"] == 3
    assert f"deepspeed: {run_dir}/deepspeed.json" in (run_dir / "config.yaml").read_text()


def test_zero3_adapter_equals_single_process_adapter(single_run, zero3_run):
    single = load_file(single_run / "output" / "adapter_model.safetensors")
    zero3 = load_file(zero3_run[0] / "output" / "adapter_model.safetensors")
    assert single.keys() == zero3.keys()
    worst = max((single[k] - zero3[k]).abs().max().item() for k in single)
    assert worst < 1e-4, worst
    assert max(t.abs().max().item() for t in single.values()) > 1e-2  # the adapters did move
    assert _losses(single_run) == pytest.approx(_losses(zero3_run[0]), abs=1e-3)


def test_rerun_into_the_same_run_directory_is_refused(single_run, air_replica):
    out = run_cli(
        "launch",
        RECIPE,
        "--model",
        str(air_replica),
        "--run-dir",
        str(single_run),
        "--nnodes",
        "1",
        "--nproc-per-node",
        "1",
    )
    assert out.returncode == 2 and "never overwritten" in out.stderr


def test_demo_prints_its_adapter(tmp_path):
    out = run_cli("demo", "--steps", "3", "--runs-root", str(tmp_path), env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    adapter = Path(out.stdout.strip().splitlines()[-1].removeprefix("adapter: "))
    assert adapter.is_file() and adapter.is_relative_to(tmp_path)
    assert "running: .venv/bin/python -m finetune launch llamafactory/glm45-air_lora_4xh100" in out.stdout
    # the path `finetune launch` takes: the format check, a run directory with its manifest, progress lines
    run_dir = adapter.parent.parent
    assert "format: 7 conversations render as GLM-4.5 does (LLaMA-Factory, template glm45)" in out.stderr
    assert f"run directory: {run_dir}" in out.stdout and (run_dir / "manifest.json").is_file()
    assert re.search(r"^  step 3/3, loss \d+\.\d{4}, [\d,]+ tokens/s, ETA 0:00$", out.stdout, re.M), out.stdout
    # quiet: the frameworks' output is in the log, not on the terminal, and known-harmless warnings are gone
    log = (run_dir / "logs" / "node0.log").read_text()
    assert "'loss'" in log and "'loss'" not in out.stdout
    assert "Warning" not in out.stdout + out.stderr + log, [line for line in log.splitlines() if "Warning" in line]
