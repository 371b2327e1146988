"""Running a planned launch on this node: claim the run directory, meet the other nodes, run torchrun, watch.

Signals: the first SIGTERM or SIGINT (Slurm's pre-timeout signal, `scancel`, Ctrl-C) does not kill training; it
creates this node's stop file, the trainers (finetune/frameworks/trainer/graceful_stop.py) agree on it at the end of
the step, save a complete checkpoint and exit, and the run can be resumed with `--resume`. A second signal stops at
once. A run that stopped so ends with STOPPED_EXIT, not 0, and node 0 records every attempt's state in the run
directory (finetune/launch/run_state.py).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from finetune.errors import FinetuneError
from finetune.launch.checkpoints import trained_step
from finetune.launch.console import QuietConsole
from finetune.launch.plan import LaunchPlan
from finetune.launch.process_group import stop_group
from finetune.launch.record import launch_record
from finetune.launch.run_state import (
    STOPPED_EXIT,
    RunState,
    State,
    clear_stop_marker,
    read_stop_marker,
    write_state,
)
from finetune.launch.rundir import LOGS_NAME, OUTPUT_NAME, claim_run_dir, write_launch_record
from finetune.tracking.manifest import build_manifest, write_manifest
from finetune.tracking.redaction import mask_stream
from finetune.tracking.start import start_tracking

POLL_S = 1.0
STALE_S = 15.0  # a peer whose heartbeat (every 2 s) is this old is gone
KILL_GRACE_S = 15.0


def stop_file(run_dir: Path, node_rank: int) -> Path:
    return run_dir / f"stop-node{node_rank}"


def _tee(stream, log_path: Path, console: QuietConsole | None) -> threading.Thread:
    """Copy the trainers' output into the log, and to the terminal: all of it, or what `console` shows."""

    def copy() -> None:
        with open(log_path, "ab") as log:
            chunks = mask_stream(iter(lambda: stream.read1(65536), b""))  # secrets never reach the log

            def logged() -> Iterator[bytes]:
                for chunk in chunks:
                    log.write(chunk)
                    log.flush()
                    yield chunk

            for shown in logged() if console is None else console.feed(logged()):
                sys.stdout.buffer.write(shown)
                sys.stdout.buffer.flush()

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def _terminate(proc: subprocess.Popen) -> None:
    """End torchrun and its workers now (they share a process group). SIGINT, not SIGTERM: torchrun runs with
    SIGTERM blocked and the workers take SIGTERM as a request to checkpoint first."""
    stop_group(proc, ((signal.SIGINT, KILL_GRACE_S), (signal.SIGKILL, 5.0)))


def _start_torchrun(argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """torchrun in a session of its own, with SIGTERM blocked (inherited across exec): a SIGTERM sent to every
    process of the job (Slurm's preemption, `scancel`) must not make torchrun kill its workers ~30 s later, in the
    middle of a long step or checkpoint. The workers unblock it (finetune/frameworks/trainer/sigterm.py)."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def execute(plan: LaunchPlan, *, verbose: bool = True, stop_grace: float | None = None) -> int:
    """Run the plan on this node; `verbose` shows the frameworks' whole output, else progress lines only.
    `stop_grace`: seconds the trainers get to checkpoint after a stop request before they are stopped at once
    (None: as long as they take)."""
    topo = plan.topology
    host = socket.gethostname()
    group = None
    if topo.nnodes > 1:  # meet the other nodes before anything is written
        from finetune.launch.rendezvous import NodeGroup

        group = NodeGroup(topo.master_addr, topo.master_port, topo.nnodes, topo.node_rank, plan.join_timeout)
        try:
            group.join(plan.config_sha256, host)
        except FinetuneError as exc:
            raise FinetuneError(f"{exc}\n{_untouched(plan.run_dir)}") from exc
        group.start_heartbeat()
        print(f"all {topo.nnodes} nodes joined with the same config", flush=True)
    try:
        return _run(plan, group, host, None if verbose else QuietConsole(), stop_grace)
    except BaseException as exc:
        if group is not None:  # tell the other nodes at once instead of leaving them to time out
            group.report_failure(f"{type(exc).__name__} on {host}: {exc}")
        raise
    finally:
        if group is not None:
            group.close()


def _untouched(run_dir: Path) -> str:
    """What a launch that never met its nodes left behind: nothing (the nodes meet before anything is written)."""
    if not run_dir.exists():
        return f"Nothing was written: {run_dir} was not created; the same command starts the job again."
    held = sorted(p.name for p in run_dir.iterdir())
    return f"{run_dir} is as it was ({len(held)} entries: {', '.join(held[:8])}{', ...' if len(held) > 8 else ''})."


def start(plan: LaunchPlan) -> LaunchPlan:
    """Claim the run directory and the wandb run, write the manifest (node 0) and this node's launch record.

    Returns the plan as it runs: the tracking that holds and the environment the trainers get (finetune/tracking).
    The record is built once, so the manifest and the record agree on commit, host, time and command."""
    topo, run_dir = plan.topology, plan.run_dir
    claim_run_dir(run_dir, topo.node_rank, plan.files, plan.attempt)
    tracking, env = start_tracking(plan.tracking, run_dir, plan.attempt)
    plan = replace(plan, tracking=tracking, env={**plan.env, **env})
    record = launch_record(plan)
    if topo.node_rank == 0:
        write_manifest(run_dir, plan.attempt, build_manifest(plan, record))
    write_launch_record(run_dir, topo.node_rank, record, plan.attempt)
    if topo.node_rank == 0:
        clear_stop_marker(run_dir)
        write_state(run_dir, RunState(State.RUNNING, plan.attempt))
    return plan


def ended_state(plan: LaunchPlan, code: int, detail: str = "") -> RunState:
    """How this attempt ended, as `finetune status` shows it."""
    if code == STOPPED_EXIT:
        marker = read_stop_marker(plan.run_dir)
        return RunState(State.STOPPED, plan.attempt, marker.step, marker.checkpoint, code)
    step = trained_step(plan.run_dir / OUTPUT_NAME)
    if code == 0:
        return RunState(State.FINISHED, plan.attempt, step, exit_code=0)
    return RunState(State.FAILED, plan.attempt, step, exit_code=code, detail=detail)


def _run(plan: LaunchPlan, group, host: str, console: QuietConsole | None, stop_grace: float | None) -> int:
    plan = start(plan)
    try:
        code = _watch(plan, group, host, console, stop_grace)
    except BaseException as exc:
        if plan.topology.node_rank == 0:
            write_state(plan.run_dir, ended_state(plan, 1, f"{type(exc).__name__}: {exc}"))
        raise
    if plan.topology.node_rank == 0:
        write_state(plan.run_dir, ended_state(plan, code))
    return code


def _stopped_on_request(plan: LaunchPlan, code: int) -> int:
    """torchrun's code, or STOPPED_EXIT when the trainers stopped on request (they exit 0 and leave the marker)."""
    return STOPPED_EXIT if code == 0 and read_stop_marker(plan.run_dir) is not None else code


def _watch(plan: LaunchPlan, group, host: str, console: QuietConsole | None, stop_grace: float | None) -> int:
    topo, run_dir = plan.topology, plan.run_dir
    log_path = run_dir / LOGS_NAME / f"node{topo.node_rank}.log"

    stop = stop_file(run_dir, topo.node_rank)
    stop.unlink(missing_ok=True)  # a stop request of an earlier attempt is not this one's
    env = {**os.environ, **plan.env, "FINETUNE_STOP_FILE": str(stop), "FINETUNE_RUN_DIR": str(run_dir)}
    proc = _start_torchrun(plan.argv, env)
    reader = _tee(proc.stdout, log_path, console)
    requests = []

    def on_signal(signum, _frame):
        requests.append((signum, time.monotonic()))
        if len(requests) == 1:
            stop.touch()
            name = signal.Signals(signum).name
            print(
                f"{name}: asking the trainers to checkpoint and stop after this step (send it again to stop at once)",
                flush=True,
            )
        else:
            _terminate(proc)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while proc.poll() is None:
            time.sleep(POLL_S)
            if stop_grace is not None and requests and time.monotonic() - requests[0][1] > stop_grace:
                print(
                    f"the trainers did not checkpoint within --stop-grace {stop_grace:g} s: stopping them at once "
                    "(the run resumes from its newest complete checkpoint)",
                    flush=True,
                )
                _terminate(proc)
                break
            failure = group.peer_failure(stale_after_s=STALE_S) if group else None
            if failure is not None:
                _terminate(proc)
                reader.join(timeout=5)
                raise FinetuneError(
                    f"Node {failure.node_rank} failed: {failure.reason}. Node {topo.node_rank} stopped its "
                    f"training too; resume with `finetune launch --resume {run_dir}` once all nodes are back."
                )
        reader.join(timeout=10)
        code = _stopped_on_request(plan, proc.returncode)
        if code not in (0, STOPPED_EXIT) and console is not None:
            sys.stdout.buffer.write(console.failure_report(str(log_path)))
            sys.stdout.flush()
        if group is not None:
            if code in (0, STOPPED_EXIT):
                group.report_done()
                if topo.node_rank == 0:
                    _wait_for_peers(group)  # node 0 hosts the store: keep it up until the others are done
                return code
            cause = _peer_behind(group)  # a lost peer makes the collectives here fail first
            group.report_failure(f"exit code {code} on {host}; its log: {log_path}")
            if cause is not None:
                raise FinetuneError(
                    f"Node {cause.node_rank} failed: {cause.reason}. Node {topo.node_rank}'s training stopped as a "
                    f"result (exit code {code}); resume with `finetune launch --resume {run_dir}`."
                )
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _peer_behind(group, window_s: float = 12.0):
    """The peer whose loss explains this node's failure, if one shows up within `window_s`."""
    deadline = time.monotonic() + window_s
    while time.monotonic() < deadline:
        failure = group.peer_failure(stale_after_s=6.0)
        if failure is not None:
            return failure
        time.sleep(0.5)
    return None


def _wait_for_peers(group, timeout_s: float = 60.0) -> None:
    """Keep node 0's store up until the others have said how they ended (a failed node does not wait)."""
    deadline = time.monotonic() + timeout_s
    others = [r for r in range(group.nnodes) if r != group.node_rank]
    while time.monotonic() < deadline:
        try:
            if all(group.store.check([f"done/{r}"]) or group.store.check([f"failed/{r}"]) for r in others):
                return
        except Exception:
            return
        time.sleep(0.5)
