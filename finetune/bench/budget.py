"""A time budget for the benchmark, and estimates of how long each measurement takes.

The GPU the harness is meant for is lent for minutes, not hours. A measurement is started only when its estimate
fits in what is left, so the budget ends between measurements rather than inside one; what did not fit is
recorded as skipped for the budget, never silently dropped. Estimates come from what this run has already
measured (seconds per planned FLOP of the most similar finished configuration, times a safety factor) and,
before anything is measured, from the planner's slowest predicted speed or a fixed prior.

Deadlines are wall-clock times (`time.time()`), so a budget handed to a child process means the same there.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SAFETY = 1.25  # estimates from measurements are stretched by this much: a longer sequence is not quite linear
PRIOR_CONFIG_S = {"gpu": 60.0, "cpu": 5.0}  # one configuration, before anything was measured or planned
PRIOR_STARTUP_S = {"gpu": 60.0, "cpu": 15.0}  # a `bench run` process: imports, building the slice


class Budget:
    """Seconds left until a wall-clock deadline."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.time):
        self.deadline = deadline
        self.clock = clock

    @classmethod
    def starting_now(cls, seconds: float, clock: Callable[[], float] = time.time) -> Budget:
        if not seconds > 0:
            raise ValueError(f"a budget must be a positive number of seconds, not {seconds}")
        return cls(clock() + seconds, clock)

    def left(self) -> float:
        return max(0.0, self.deadline - self.clock())

    def allows(self, estimate_s: float, reserve_s: float = 0.0) -> bool:
        """Whether something estimated to take `estimate_s` can finish, keeping `reserve_s` for what must follow."""
        return estimate_s <= self.left() - reserve_s

    def refusal(self, what: str, estimate_s: float, reserve_s: float = 0.0) -> str:
        """Why `what` was not started, for the records (`budget: ...`, which reports look for)."""
        kept = f" ({reserve_s:.0f} s more kept for the report)" if reserve_s else ""
        return f"budget: {what} estimated at {estimate_s:.0f} s, {max(0.0, self.left() - reserve_s):.0f} s left{kept}"


@dataclass(frozen=True)
class Point:
    """One finished configuration: its kind, its planned work and how long it took."""

    model: str
    layers: int
    method: str
    checkpointing: bool
    experts_impl: str
    flops: float  # planned FLOPs of all its passes
    seconds: float


def passes(warmup: int, steps: int) -> float:
    """Training steps one configuration runs, counting the extra forward that measures saved activations."""
    return warmup + steps + 1 / 3


def planned_flops(record: dict[str, Any]) -> float | None:
    """Planned FLOPs of one configuration's passes: FLOPs per token x tokens x steps (None without a plan)."""
    c, p = record.get("config") or {}, record.get("planned") or {}
    per_token = p.get("flops_per_token")
    if not per_token or "seq_len" not in c:
        return None
    return per_token * c["seq_len"] * c.get("micro_batch", 1) * passes(c.get("warmup", 1), c.get("steps", 3))


def point_of(record: dict[str, Any]) -> Point | None:
    """The timing a finished record teaches, if it has one (records that ran out of memory or were skipped
    teach nothing about a full configuration)."""
    flops = planned_flops(record)
    elapsed = record.get("elapsed_s")
    if record.get("kind") != "train_step" or record.get("status") != "ok" or not flops or not elapsed:
        return None
    s, c = record["slice"], record["config"]
    return Point(s["model"], s["layers"], c["method"], c["checkpointing"], c["experts_impl"], flops, elapsed)


class Estimator:
    """Seconds a configuration will take, learned from the configurations measured so far."""

    def __init__(self, device_kind: str, records: Iterable[dict[str, Any]] = ()):
        self.device_kind = device_kind
        self.points: list[Point] = []
        self.setups: dict[tuple[str, str], float] = {}  # (model, method): the longest model build seen
        self.startups: list[float] = []
        for record in records:
            self.learn(record)

    def learn(self, record: dict[str, Any]) -> None:
        point = point_of(record)
        if point is not None:
            self.points.append(point)
        if record.get("setup_s"):
            key = (record["slice"]["model"], record["config"]["method"])
            self.setups[key] = max(self.setups.get(key, 0.0), record["setup_s"])

    def learn_startup(self, seconds: float) -> None:
        """A child process's own cost: its wall time less the configurations it ran (imports, planning)."""
        self.startups.append(max(0.0, seconds))

    def startup_seconds(self) -> float:
        """The longest start-up seen (stretched by the safety factor), else the prior for this kind of device."""
        return SAFETY * max(self.startups) if self.startups else PRIOR_STARTUP_S[self.device_kind]

    def smallest_config_seconds(self) -> float:
        """The quickest configuration measured so far (0 before any): a unit is worth starting only if at least
        that much fits after its start-up; the child then checks each configuration against its own estimate."""
        return min((p.seconds for p in self.points), default=0.0)

    def setup_seconds(self, model: str, method: str) -> float:
        """Building a slice and its optimizer: the longest seen for this model and method, else for any (0 when
        none was seen: a process's first build counts in its start-up estimate)."""
        if (model, method) in self.setups:
            return self.setups[(model, method)]
        return max(self.setups.values(), default=0.0)

    def _similar(self, want: Point) -> list[Point]:
        """The measured points most like `want`: same everything, then looser, down to any point at all."""
        levels: list[Callable[[Point], tuple]] = [
            lambda p: (p.model, p.layers, p.method, p.checkpointing, p.experts_impl),
            lambda p: (p.model, p.method, p.checkpointing, p.experts_impl),
            lambda p: (p.model, p.method, p.checkpointing),
            lambda p: (p.model, p.method),
            lambda p: (p.method,),
            lambda p: (),
        ]
        for key in levels:
            found = [p for p in self.points if key(p) == key(want)]
            if found:
                return found
        return []

    def config_seconds(self, record: dict[str, Any]) -> float:
        """Estimate for the configuration `record` describes (its slice, config and planned figures)."""
        s, c, plan = record["slice"], record["config"], record.get("planned") or {}
        flops = planned_flops(record)
        if flops:
            want = Point(s["model"], s["layers"], c["method"], c["checkpointing"], c["experts_impl"], flops, 0.0)
            similar = self._similar(want)
            if similar:
                return SAFETY * flops * max(p.seconds / p.flops for p in similar)
        slowest = (plan.get("tokens_per_s") or [None])[0]
        if slowest:
            tokens = c["seq_len"] * c.get("micro_batch", 1)
            return passes(c.get("warmup", 1), c.get("steps", 3)) * tokens / slowest
        return PRIOR_CONFIG_S[self.device_kind]
