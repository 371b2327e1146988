"""The command line: the `finetune` console script, and the first release's spellings of the bench commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from finetune.cli.bench import legacy_argv
from tests.conftest import REPO_ROOT


def test_console_script_runs_the_cli():
    script = Path(sys.executable).parent / "finetune"
    assert script.is_file(), f"{script} is missing: ./setup.sh installs the `finetune` command"
    out = subprocess.run([str(script), "recipes", "--json"], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"llamafactory/glm45-air_lora_4xh100"' in out.stdout


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["bench", "--tiny"], ["bench", "run", "--tiny"]),
        (["bench"], ["bench", "run"]),
        (["bench-report", "r.jsonl", "--cpu"], ["bench", "report", "r.jsonl", "--cpu"]),
        (["bench-slice", "--out", "x"], ["bench", "slice", "--out", "x"]),
        (["bench-framework", "swift/x"], ["bench", "framework", "swift/x"]),
        (["bench", "report", "r.jsonl"], ["bench", "report", "r.jsonl"]),
        (["bench", "--help"], ["bench", "--help"]),
        (["plan", "bench"], ["plan", "bench"]),
    ],
)
def test_old_bench_spellings_mean_the_new_subcommands(argv, expected):
    assert legacy_argv(argv) == expected


def test_old_and_new_spelling_are_the_same_command():
    def run(*argv: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "finetune", *argv], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert run("bench-report", "--help") == run("bench", "report", "--help")
    assert "usage: finetune bench report" in run("bench-report", "--help")
