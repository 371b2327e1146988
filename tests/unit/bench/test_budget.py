"""The time budget: a measurement starts only when its estimate fits, estimates learn from what was measured,
and `bench run --budget` records what did not fit as skipped for the budget instead of starting it."""

from __future__ import annotations

import pytest

from finetune.bench.budget import PRIOR_CONFIG_S, SAFETY, Budget, Estimator, passes, planned_flops
from finetune.bench.measure import Device
from finetune.bench.run import Matrix, run_matrix
from finetune.bench.slice import make_slice


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def record(model="glm-4.5-air", method="lora", on=True, seq=4096, impl="grouped_mm", status="ok", **extra):
    return {
        "kind": "train_step",
        "status": status,
        "slice": {"model": model, "layers": 2},
        "config": {"method": method, "checkpointing": on, "seq_len": seq, "experts_impl": impl, "steps": 3,
                   "warmup": 1, "micro_batch": 1},
        "planned": {"flops_per_token": 5e9, "tokens_per_s": [1000.0, 5000.0]},
        **extra,
    }  # fmt: skip


def test_budget_counts_down_and_refuses_what_does_not_fit():
    clock = Clock()
    budget = Budget.starting_now(100, clock)
    assert budget.allows(100) and not budget.allows(100.5)
    clock.now += 70
    assert budget.left() == pytest.approx(30)
    assert budget.allows(10, reserve_s=20) and not budget.allows(11, reserve_s=20)
    assert budget.refusal("this", 11, 20).startswith("budget: this estimated at 11 s, 10 s left")
    clock.now += 1000
    assert budget.left() == 0


@pytest.mark.parametrize("seconds", [0, -5, float("nan")])
def test_a_budget_must_be_positive(seconds):
    with pytest.raises(ValueError, match="positive"):
        Budget.starting_now(seconds)


def test_before_any_measurement_the_estimate_is_the_planners_slowest_speed():
    est = Estimator("gpu")
    assert est.config_seconds(record(seq=4096)) == pytest.approx(passes(1, 3) * 4096 / 1000.0)
    unplanned = record() | {"planned": {}}
    assert est.config_seconds(unplanned) == PRIOR_CONFIG_S["gpu"]


def test_the_estimate_learns_from_the_most_similar_measurement_and_scales_with_planned_work():
    est = Estimator("gpu")
    est.learn(record(seq=4096, elapsed_s=8.0))  # the same kind of configuration
    est.learn(record(method="full", seq=4096, elapsed_s=80.0))  # slower, but another method
    est.learn(record(seq=2048, status="oom", elapsed_s=500.0))  # teaches nothing
    longer = record(seq=16384)
    assert est.config_seconds(longer) == pytest.approx(SAFETY * 8.0 * 4)  # 4x the planned FLOPs
    other_model = record(model="glm-4.5", seq=4096)  # nothing for this model: any LoRA point
    assert est.config_seconds(other_model) == pytest.approx(SAFETY * 8.0)
    assert est.smallest_config_seconds() == 8.0
    assert planned_flops(longer) == pytest.approx(4 * planned_flops(record(seq=4096)))


def test_start_up_and_model_builds_are_learned_with_a_prior_before():
    est = Estimator("cpu")
    assert est.setup_seconds("glm-4.5", "full") == 0.0 and est.startup_seconds() == 15.0
    est.learn(record(method="full", setup_s=12.0, elapsed_s=1.0))
    est.learn_startup(7.0)
    est.learn_startup(9.0)
    assert est.setup_seconds("glm-4.5-air", "full") == 12.0 and est.startup_seconds() == SAFETY * 9.0


class FixedEstimate(Estimator):
    def config_seconds(self, record) -> float:
        return 10.0


def test_bench_run_starts_no_configuration_that_cannot_finish():
    """After the first configuration the clock jumps to 5 s before the deadline: the next (estimated 10 s) must
    be recorded as skipped for the budget, not started."""
    clock = Clock()
    budget = Budget(clock() + 100, clock)
    matrix = Matrix(methods=("lora",), checkpointing=(True,), seq_lens=(32, 48), experts_impls=("eager",), steps=1,
                    warmup=0)  # fmt: skip

    def log(line: str) -> None:
        clock.now = budget.deadline - 5

    device = Device("cpu", "cpu", "cpu", None, None, None)
    rows = run_matrix(make_slice("glm-4.5-air", 2, tiny=True), matrix, device, None, log, budget, FixedEstimate("cpu"))
    assert [r["status"] for r in rows] == ["ok", "skipped"]
    assert rows[0]["elapsed_s"] > 0 and rows[0]["setup_s"] > 0
    assert rows[1]["reason"].startswith("budget: this configuration estimated at 10 s, 5 s left")
    assert "metrics" not in rows[1]


def test_a_record_without_a_memory_ratio_still_prints_its_line():
    """A CPU peak above the floor can be 0 bytes (and a planner without the slice's figures gives no plan): the
    summary line says so instead of failing the run that measured it."""
    from finetune.bench.compare import ratios
    from finetune.bench.run import summary_line

    assert ratios({"peak_memory_bytes": 0}, {"memory_bytes": 2**30})["memory"] == 0.0
    record = {
        "device_kind": "cpu",
        "slice": {"model": "glm-4.5-air", "layers": 2},
        "config": {"method": "lora", "checkpointing": True, "seq_len": 32, "experts_impl": "eager"},
        "status": "ok",
        "metrics": {"mfu": None, "peak_memory_bytes": 0, "memory_kind": "cpu", "step_time_s": 0.5, "tokens_per_s": 64},
        "planned": {"memory_gib": 1.0},
        "ratios": {"memory": None},
    }
    assert "planned 1.00, x-) step 0.500 s 64 tok/s MFU -" in summary_line(record)
