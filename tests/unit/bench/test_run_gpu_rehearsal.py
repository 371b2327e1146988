"""The CPU rehearsal of the GPU measurement run: bench/run_gpu.sh itself, with this interpreter as PY, `--tiny`
and a budget too small for the whole matrix. The most valuable configurations come first, the budget stops the
run in time with the rest recorded as skipped for the budget, and report.md says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from finetune.bench import records
from tests.conftest import REPO_ROOT

BUDGET_S = 60  # one or two units of the tiny matrix on two cores; the whole one takes many minutes


def test_rehearsal_measures_the_most_valuable_first_and_stops_within_its_budget(tmp_path):
    out = tmp_path / "results"
    env = {**os.environ, "PY": sys.executable, "OMP_NUM_THREADS": "1"}
    started = time.time()
    proc = subprocess.run(
        ["bash", "bench/run_gpu.sh", "--budget", str(BUDGET_S), "--tiny", "--steps", "1", "--warmup", "0"]
        + ["--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUDGET_S + 60,
    )
    wall = time.time() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert wall < BUDGET_S + 10, wall  # interpreter start and the final kill, no more

    rows = records.read([out / "train.jsonl"])
    head = [(r["slice"]["model"], r["config"]["method"], r["config"]["checkpointing"], r["config"]["seq_len"])
            for r in rows[:2]]  # fmt: skip
    assert head == [("glm-4.5-air", "lora", True, 64), ("glm-4.5-air", "lora", True, 128)]  # 4k and 16k, tiny
    assert [r["status"] for r in rows[:2]] == ["ok", "ok"] and all(r["device_kind"] == "cpu" for r in rows)
    skipped = [r for r in rows if r["status"] == "skipped" and r["reason"].startswith("budget")]
    assert skipped and len(skipped) + 2 <= len(rows), "part of the matrix runs, the rest is skipped for the budget"
    assert rows[-1]["slice"]["layers"] == 3  # the per-layer units, last of the training steps, were reached
    assert {r["config"]["method"] for r in skipped} == {"lora", "full"}

    frameworks = records.read([out / "frameworks.jsonl"])
    assert [r["recipe"].split("/")[0] for r in frameworks] == ["llamafactory", "swift"]
    assert all(r["status"] == "skipped" for r in frameworks)

    report = (out / "report.md").read_text()
    assert report.startswith("# Benchmark run on cpu (CPU rehearsal, tiny shapes: NOT GPU figures)")
    assert f"Budget {BUDGET_S} s" in report
    assert "| glm-4.5-air: lora, checkpointing on, 4k and 16k | ran |" in report
    assert "| start-up timings | skipped: budget" in report
    assert "NOT GPU figures" in report.split("| start-up timings |")[1]  # then the tables, labelled as CPU
