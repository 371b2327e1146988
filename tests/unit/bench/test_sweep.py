"""`bench sweep` (bench/run_gpu.sh): the units come most valuable first, a child still running when the budget
is spent is stopped and its configuration recorded as not measured, framework steps whose packages are absent
are recorded as skipped naming them, and bad input is refused clearly."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from finetune.bench import records, sweep
from finetune.bench.budget import Estimator
from finetune.bench.units import FrameworkUnit, SliceUnit, StartupUnit, TrainUnit, value_ordered
from finetune.errors import FinetuneError
from tests.conftest import run_cli

DEVICE = {"device": "cpu", "device_kind": "cpu", "versions": {"torch": "x"}}


def test_units_come_most_valuable_first():
    units = value_ordered(("eager", "batched_mm", "grouped_mm"), "grouped_mm")
    first = [(u.model, u.method, u.checkpointing, u.seq_lens, u.experts) for u in units[:2]]
    assert first == [
        ("glm-4.5-air", "lora", (True,), (4096, 16384), ("grouped_mm",)),
        ("glm-4.5", "lora", (True,), (4096, 16384), ("grouped_mm",)),
    ]
    assert [(u.model, u.experts, u.seq_lens) for u in units[2:4]] == [
        ("glm-4.5-air", ("eager", "batched_mm"), (4096,)),
        ("glm-4.5", ("eager", "batched_mm"), (4096,)),
    ]  # the default was measured first already
    assert [(u.method, u.checkpointing) for u in units[4:6]] == [("full", (True,))] * 2
    kinds = [type(u) for u in units]
    assert kinds[-4:] == [SliceUnit, FrameworkUnit, FrameworkUnit, StartupUnit]
    assert all(k is TrainUnit for k in kinds[:-4])
    covered = {(u.model, u.layers, u.method, c.checkpointing, c.seq_len) for u in units[:-4] for c in u.configs()}
    full_matrix = {
        (m, 2, method, on, s)
        for m in ("glm-4.5-air", "glm-4.5")
        for method in ("lora", "full")
        for on in (True, False)
        for s in (2048, 4096, 8192, 16384)
    }
    assert full_matrix <= covered  # nothing of the old matrix is dropped, only reordered
    tiny = value_ordered(("eager", "grouped_mm"), "grouped_mm", tiny=True)
    assert [u.name for u in tiny] == [u.name for u in value_ordered(("eager", "grouped_mm"), "grouped_mm")]
    assert tiny[0].seq_lens == (64, 128) and "--tiny" in tiny[0].argv(tiny=True, steps=1, warmup=0)


def make_sweep(tmp_path: Path, budget_s: float = 100.0, **extra) -> sweep.Sweep:
    options = sweep.Options(python=Path(sys.executable), budget_s=budget_s, out=tmp_path, tiny=True, **extra)
    s = sweep.Sweep(options, log=lambda line: None)
    s.device, s.estimator = DEVICE, Estimator("cpu")
    return s


def test_a_child_stopped_by_the_budget_leaves_its_configuration_not_measured(tmp_path, monkeypatch):
    unit = value_ordered(("eager", "grouped_mm"), "grouped_mm", tiny=True)[0]
    s = make_sweep(tmp_path)
    first = unit.configs()[0]

    def killed_after_one(argv, env, stdout=None):  # wrote one record, then the budget ran out
        from finetune.bench import placeholders

        done = placeholders.train(DEVICE, unit, first, tiny=True, steps=3, warmup=1, status="ok", reason="")
        records.append(tmp_path / unit.results, done | {"elapsed_s": 1.0})
        return None, 30.0

    monkeypatch.setattr(s, "_child", killed_after_one)
    outcome = s._train(unit)
    rows = records.read([tmp_path / unit.results])
    assert outcome.status == "not_measured"
    assert [(r["config"]["seq_len"], r["status"]) for r in rows] == [(64, "ok"), (128, "not_measured")]
    assert rows[1]["reason"].startswith("budget")


def test_a_unit_that_cannot_start_in_time_is_recorded_as_skipped_for_the_budget(tmp_path, monkeypatch):
    unit = value_ordered(("eager",), "eager", tiny=True)[0]
    s = make_sweep(tmp_path, budget_s=30.0)  # 30 s less 20 kept for the report: under the 15 s start-up prior
    monkeypatch.setattr(s, "_child", lambda *a, **k: pytest.fail("started a unit that could not fit"))
    outcome = s._train(unit)
    rows = records.read([tmp_path / unit.results])
    assert outcome.status == "skipped" and len(rows) == len(unit.configs())
    assert all(r["status"] == "skipped" and r["reason"].startswith("budget: starting this unit") for r in rows)


def test_the_child_is_stopped_when_the_budget_is_spent(tmp_path):
    s = make_sweep(tmp_path, budget_s=2.0, reserve_s=0.0)
    started = time.time()
    code, wall = s._child([sys.executable, "-c", "import time; time.sleep(60)"], None)
    assert code is None and wall < 10 and time.time() - started < 10


def test_a_framework_step_without_its_packages_is_skipped_naming_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_SWIFT_PYTHON", sys.executable)  # the launcher's environment: no ms-swift
    s = make_sweep(tmp_path)
    s.slice_dir = tmp_path  # as if saved
    unit = FrameworkUnit("swift on the slice", "swift/glm45-air_lora_4xh100")
    outcome = s._framework(unit)
    (row,) = records.read([tmp_path / "frameworks.jsonl"])
    assert outcome.status == row["status"] == "skipped"
    assert "packages absent" in row["reason"] and "swift" in row["reason"] and "--wheels" in row["reason"]
    assert row["recipe"] == unit.recipe and row["device_kind"] == "cpu"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "positive"),
        (["--budget", "-10"], "positive"),
        (["--budget", "soon"], "a number of seconds"),
        (["--budget", "60", "--no-such-option"], "unrecognized arguments: --no-such-option"),
        ([], "required: --budget"),
        (["--budget", "60", "--wheels", "/nonexistent/wheels"], "no such folder"),
    ],
)
def test_bad_input_is_refused_clearly(args, message):
    proc = run_cli("bench", "sweep", *args, "--tiny", timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_results_are_never_appended_to_an_earlier_run(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    options = sweep.Options(python=Path(sys.executable), budget_s=60, out=tmp_path, tiny=True)
    with pytest.raises(FinetuneError, match="not empty"):
        sweep.Sweep(options, log=lambda line: None).run()
