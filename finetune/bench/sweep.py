"""`bench sweep`: the GPU measurement run, most valuable first, inside a time budget (`bench/run_gpu.sh`).

Each unit of `units.value_ordered` runs as a child process with the given interpreter. A unit starts only when
its estimated start-up and at least its quickest configuration fit in what is left; inside, `bench run` starts a
configuration only when its own estimate fits. A child still running when the budget is spent is killed; the
configuration it was measuring is recorded as `not_measured` and the rest as skipped for the budget, so the
records and report.md always say what was measured and why the rest was not. Some seconds are kept back so
that report.md is written in any case. Framework steps run when their packages are importable, or installed from
a wheels folder (`envs`); otherwise they are recorded as skipped, naming what is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.bench import envs, placeholders, records
from finetune.bench.budget import Budget, Estimator
from finetune.bench.units import FrameworkUnit, SliceUnit, StartupUnit, TrainUnit, value_ordered
from finetune.errors import FinetuneError
from finetune.paths import REPO_ROOT

RESERVE_S = 20.0  # kept back for report.md
PRIOR_S = {  # units with no configurations to learn from: slice save, one framework run, the start-up timings
    "slice": {"gpu": 120.0, "cpu": 30.0},
    "framework": {"gpu": 300.0, "cpu": 150.0},
    "startup": {"gpu": 180.0, "cpu": 240.0},
}
RESULTS = ("train.jsonl", "experts.jsonl", "frameworks.jsonl")
PROBE = """
import json, sys
from finetune.bench import experts, measure
device = measure.detect(sys.argv[1] or None)
print(json.dumps({**device.to_json(), "versions": measure.environment(),
                  "experts": list(experts.available()), "default": experts.default()}))
"""


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


def default_out(device: str) -> Path:
    slug = "-".join("".join(c if c.isalnum() else " " for c in device.lower()).split())
    return REPO_ROOT / "bench" / "results" / f"{datetime.now(UTC):%Y%m%d-%H%M}-{slug}"


@dataclass(frozen=True)
class Options:
    python: Path
    budget_s: float
    out: Path | None  # None: bench/results/<UTC time>-<device>
    tiny: bool = False
    wheels: Path | None = None
    steps: int = 3
    warmup: int = 1
    reserve_s: float = RESERVE_S


@dataclass(frozen=True)
class Outcome:
    unit: str
    status: str  # ran, failed, skipped, not_measured
    reason: str = ""
    wall_s: float | None = None


class Sweep:
    """One budgeted measurement run into `options.out`."""

    def __init__(self, options: Options, log: Callable[[str], None] = print):
        self.o = options
        self.log = log
        self.budget = Budget.starting_now(options.budget_s)
        self.work = Path()  # a temporary folder while `run` runs: environments, the saved slice, framework runs
        self.base = envs.StepEnv()
        self.framework_envs: dict[str, envs.StepEnv | str] = {}
        self.slice_dir: Path | None = None
        self.outcomes: list[Outcome] = []
        self.device: dict[str, Any] = {}
        self.estimator: Estimator | None = None

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> list[Outcome]:
        if self.o.out is not None and self.o.out.exists() and any(self.o.out.iterdir()):
            raise FinetuneError(f"--out {self.o.out}: not empty; give a new folder (records are appended).")
        self.work = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
        previous = signal.signal(signal.SIGTERM, _terminate)  # so that a running child is stopped too
        try:
            self._launcher_env()
            self.device = self._probe()
            if self.o.out is None:
                self.o = replace(self.o, out=default_out(self.device["device"]))
            self.o.out.mkdir(parents=True, exist_ok=True)
            self.log(f"results: {self.o.out}")
            self.estimator = Estimator(self.device["device_kind"])
            handlers = {TrainUnit: self._train, SliceUnit: self._slice, FrameworkUnit: self._framework}
            handlers[StartupUnit] = self._startup
            for unit in value_ordered(tuple(self.device["experts"]), self.device["default"], tiny=self.o.tiny):
                try:
                    outcome = handlers[type(unit)](unit)
                except FinetuneError as exc:  # e.g. an interpreter that cannot be asked: this unit only
                    outcome = Outcome(unit.name, "failed", str(exc).splitlines()[0])
                self.outcomes.append(outcome)
                self.log(f"== {unit.name}: {outcome.status}{f' ({outcome.reason})' if outcome.reason else ''}")
            self._report()
        except (KeyboardInterrupt, SystemExit):
            if self.device and self.o.out is not None:  # what was measured so far still gets its report
                self.log("interrupted: writing report.md with what was measured so far")
                self._report()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            shutil.rmtree(self.work, ignore_errors=True)
        return self.outcomes

    def _results(self) -> list[Path]:
        return [self.o.out / name for name in RESULTS if (self.o.out / name).is_file()]

    def _child_budget(self) -> float:
        return self.budget.left() - self.o.reserve_s

    def _child(self, argv: list[str], env: dict[str, str], stdout=None) -> tuple[int | None, float]:
        """Run a child until it ends or the budget (less the reserve) is spent: (exit code or None, seconds)."""
        started = time.time()
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=stdout, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=max(0.0, self._child_budget()))
        except subprocess.TimeoutExpired:
            code = None
        finally:  # also when this process is interrupted: the child has a session of its own
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return code, time.time() - started

    def _bench(self, *args: str) -> list[str]:
        return [str(self.o.python), "-m", "finetune", "bench", *args]

    # -- interpreters ----------------------------------------------------------------------------------------
    def _launcher_env(self) -> None:
        missing = envs.absent(self.o.python, envs.LAUNCHER_MODULES)
        if not missing:
            return
        if self.o.wheels is None:
            raise FinetuneError(
                f"{self.o.python} lacks {', '.join(missing)}, which every benchmark step imports: give "
                "--wheels DIR (made by bench/build_wheels.sh), or use an interpreter with requirements.txt installed."
            )
        site = envs.site_dir(self.work / "launcher", envs.python_tag(self.o.python))
        envs.install(self.o.python, self.o.wheels, ("launcher",), site)
        self.base = envs.StepEnv(pythonpath=(site,))

    def _probe(self) -> dict[str, Any]:
        argv = [str(self.o.python), "-c", PROBE, "cpu" if self.o.tiny else ""]
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=self.base.environ(), capture_output=True, text=True)
        if proc.returncode != 0:
            raise FinetuneError(f"{self.o.python} could not load the benchmark:\n{proc.stderr[-2000:]}")
        device = json.loads(proc.stdout.strip().splitlines()[-1])
        if not self.o.tiny and device["device_kind"] != "gpu":
            raise FinetuneError(
                "torch sees no CUDA GPU here: this run measures GPUs only (--tiny rehearses it on a CPU)."
            )
        self.log(f"{device['device']} ({device['device_kind']}); budget {self.o.budget_s:.0f} s")
        return device

    def _unavailable(self, framework: str) -> str | None:
        """Why a framework step cannot run without a wheels folder (None: it can, or wheels will bring it)."""
        if self.o.wheels is not None:
            return None
        python = envs.framework_python(framework, self.o.python)
        missing = envs.absent(python, envs.FRAMEWORK_MODULES[framework])
        if not missing:
            return None
        return (
            f"packages absent from {python}: {', '.join(missing)} (no --wheels given; bench/build_wheels.sh makes it)"
        )

    def _framework_env(self, framework: str) -> envs.StepEnv | str:
        """The step's environment (its wheels installed on first use), or why installing them failed."""
        if framework not in self.framework_envs:
            if self.o.wheels is None:
                python = envs.framework_python(framework, self.o.python)
                self.framework_envs[framework] = envs.StepEnv(self.base.pythonpath, python)
            else:
                root = self.work / f"env-{framework}"
                try:
                    site = envs.site_dir(root, envs.python_tag(self.o.python))
                    envs.install(self.o.python, self.o.wheels, envs.FRAMEWORK_GROUPS[framework], site)
                    self.framework_envs[framework] = envs.StepEnv(
                        (site,), envs.framework_env(root, self.o.python, site)
                    )
                except FinetuneError as exc:
                    self.framework_envs[framework] = str(exc)
        return self.framework_envs[framework]

    # -- units -----------------------------------------------------------------------------------------------
    def _write(self, name: str, record: dict[str, Any]) -> None:
        records.append(self.o.out / name, record)

    def _placeholder(self, unit: TrainUnit, configs, status: str, reason: str) -> None:
        for config in configs:
            record = placeholders.train(
                self.device,
                unit,
                config,
                tiny=self.o.tiny,
                steps=self.o.steps,
                warmup=self.o.warmup,
                status=status,
                reason=reason,
            )
            self._write(unit.results, record)

    def _train(self, unit: TrainUnit) -> Outcome:
        est = self.estimator
        need = est.startup_seconds() + est.smallest_config_seconds()
        if not self.budget.allows(need, self.o.reserve_s):
            reason = self.budget.refusal("starting this unit", need, self.o.reserve_s)
            self._placeholder(unit, unit.configs(), "skipped", reason)
            return Outcome(unit.name, "skipped", reason)
        path = self.o.out / unit.results
        before = len(records.read([path])) if path.is_file() else 0
        argv = self._bench(
            "run",
            *unit.argv(tiny=self.o.tiny, steps=self.o.steps, warmup=self.o.warmup),
            "--out",
            str(path),
            "--budget",
            f"{max(self._child_budget(), 0.1):.1f}",
            *(a for p in self._results() for a in ("--estimate-from", str(p))),
        )
        code, wall = self._child(argv, self.base.environ())
        written = records.read([path])[before:] if path.is_file() else []
        for record in written:
            est.learn(record)
        est.learn_startup(wall - sum(r.get("elapsed_s", 0) + r.get("setup_s", 0) for r in written))
        missing = placeholders.missing_configs(unit, written)
        if code is None:
            reason = "budget: spent while it was running"
            self._placeholder(unit, missing[:1], placeholders.NOT_MEASURED, reason)
            self._placeholder(unit, missing[1:], "skipped", reason)
            return Outcome(unit.name, placeholders.NOT_MEASURED, reason, wall)
        if missing:
            reason = f"the run exited with code {code} before measuring this"
            self._placeholder(unit, missing, "error", reason)
            return Outcome(unit.name, "failed", reason, wall)
        return Outcome(unit.name, "ran", wall_s=wall)

    def _fits(self, kind: str) -> tuple[bool, str]:
        need = PRIOR_S[kind][self.device["device_kind"]]
        reason = self.budget.refusal(f"this {kind} step", need, self.o.reserve_s)
        return self.budget.allows(need, self.o.reserve_s), reason

    def _slice(self, unit: SliceUnit) -> Outcome:
        fits, reason = self._fits("slice")
        if not fits:
            return Outcome(unit.name, "skipped", reason)
        out = self.work / "slice"
        device = "cpu" if self.o.tiny else "cuda"
        argv = self._bench("slice", "--model", unit.model, "--layers", str(unit.layers), "--dense-layers", "1")
        argv += ["--device", device, "--out", str(out), *(["--tiny"] if self.o.tiny else [])]
        code, wall = self._child(argv, self.base.environ())
        if code == 0:
            self.slice_dir = out
            return Outcome(unit.name, "ran", wall_s=wall)
        if code is None:
            return Outcome(unit.name, placeholders.NOT_MEASURED, "budget: spent while it was running", wall)
        return Outcome(unit.name, "failed", f"exit code {code}", wall)

    def _framework(self, unit: FrameworkUnit) -> Outcome:
        def skip(status: str, reason: str, wall: float | None = None) -> Outcome:
            record = placeholders.framework(
                self.device, unit, "glm-4.5-air", tiny=self.o.tiny, status=status, reason=reason
            )
            self._write("frameworks.jsonl", record)
            return Outcome(unit.name, status, reason, wall)

        absent = self._unavailable(unit.framework)
        if absent:
            return skip("skipped", absent)
        if self.slice_dir is None:
            return skip("skipped", "no saved slice (its step did not run)")
        fits, reason = self._fits("framework")
        if not fits:
            return skip("skipped", reason)
        env = self._framework_env(unit.framework)
        if isinstance(env, str):
            return skip("error", env)
        run_dir = self.work / "runs" / unit.recipe.replace("/", "-")
        argv = self._bench("framework", unit.recipe, "--slice", str(self.slice_dir), "--steps", "2")
        argv += ["--run-dir", str(run_dir), "--out", str(self.o.out / "frameworks.jsonl")]
        code, wall = self._child(argv, env.environ(unit.framework))
        if code is None:
            return skip(placeholders.NOT_MEASURED, "budget: spent while it was running", wall)
        return Outcome(unit.name, "ran" if code == 0 else "failed", "" if code == 0 else f"exit code {code}", wall)

    def _startup(self, unit: StartupUnit) -> Outcome:
        target = self.o.out / "startup.md"
        absent = self._unavailable("llamafactory")  # `launch --dry-run` runs LLaMA-Factory's parser
        fits, reason = self._fits("startup")
        if absent or not fits:
            target.write_text(f"Start-up timings skipped: {absent or reason}.\n")
            return Outcome(unit.name, "skipped", absent or reason)
        env = self._framework_env("llamafactory")
        if isinstance(env, str):
            target.write_text(f"Start-up timings not measured: {env}\n")
            return Outcome(unit.name, "failed", env)
        argv = [str(self.o.python), "bench/startup_time.py", "--runs", str(unit.runs), "--importtime"]
        with target.open("w") as f:
            code, wall = self._child(argv, env.environ("llamafactory"), stdout=f)
        if code is None:
            with target.open("a") as f:
                f.write("\nStart-up timings not measured: budget spent while they ran.\n")
            return Outcome(unit.name, placeholders.NOT_MEASURED, "budget: spent while it was running", wall)
        return Outcome(unit.name, "ran" if code == 0 else "failed", "" if code == 0 else f"exit code {code}", wall)

    # -- report ----------------------------------------------------------------------------------------------
    def _report(self) -> None:
        from finetune.bench.sweep_report import header

        body = ""
        results = self._results()
        if results:
            argv = self._bench("report", *map(str, results), "--fit", *(["--cpu"] if self.o.tiny else []))
            proc = subprocess.run(argv, cwd=REPO_ROOT, env=self.base.environ(), capture_output=True, text=True)
            body = proc.stdout if proc.returncode == 0 else f"`bench report` failed:\n\n```\n{proc.stderr[-3000:]}```\n"
        rows = records.read(results)
        spent = self.o.budget_s - self.budget.left()
        text = header(self.device, self.o, spent, rows, self.outcomes) + "\n" + body
        (self.o.out / "report.md").write_text(text)
        self.log(f"report: {self.o.out / 'report.md'} ({spent:.0f} s of {self.o.budget_s:.0f})")
