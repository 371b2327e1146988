"""`bench run|report|slice|framework|sweep`: the recipes' training step measured on a slice of GLM-4.5, against
the planner (`run`); markdown from the JSON lines (`report`); a slice saved for the frameworks' own trainers
(`slice`); one real LLaMA-Factory / SWIFT step on a saved slice (`framework`); all of it, most valuable first,
inside a time budget (`sweep`, what bench/run_gpu.sh runs).

The first release's spellings (`bench` without a subcommand, `bench-report`, `bench-slice`, `bench-framework`)
still work for one release: `legacy_argv` rewrites them before parsing, so they stay out of `--help`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from finetune.catalog import DEFAULT_GPU, DEFAULT_MODEL, MODELS


def _csv(kind):
    def parse(text: str) -> list:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            raise argparse.ArgumentTypeError("give at least one value")
        try:
            return [kind(item) for item in items]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return parse


def _on_off(text: str) -> bool:
    if text in ("on", "true", "1"):
        return True
    if text in ("off", "false", "0"):
        return False
    raise ValueError(f"`{text}`: on or off")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"`{text}`: a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"`{text}`: a positive, finite number of seconds")
    return value


def _method(text: str) -> str:
    if text not in ("lora", "full"):
        raise ValueError(f"`{text}`: lora or full")
    return text


SUBCOMMANDS = ("run", "report", "slice", "framework", "sweep")


def legacy_argv(argv: list[str]) -> list[str]:
    """The first release's spellings: `bench --model ...` is `bench run ...`, `bench-report` is `bench report`."""
    head, rest = (argv[0], argv[1:]) if argv else ("", [])
    if head.startswith("bench-") and head.removeprefix("bench-") in SUBCOMMANDS:
        return ["bench", head.removeprefix("bench-"), *rest]
    if head == "bench" and (not rest or rest[0] not in (*SUBCOMMANDS, "-h", "--help")):
        return ["bench", "run", *rest]
    return argv


HELP = {
    "run": "measure training steps on a GLM-4.5 slice (memory, speed, MFU) vs the planner",
    "report": "markdown table of benchmark records: measured vs planned",
    "slice": "save a GLM-4.5 slice (random weights) as a local Hugging Face folder",
    "framework": "one real framework training step on a saved slice (GPU machines)",
    "sweep": "the whole GPU measurement run, most valuable first, inside a time budget (bench/run_gpu.sh)",
}


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks on a GLM-4.5 slice: run | report | slice | framework | sweep")
    commands = bench.add_subparsers(dest="bench_command", metavar="SUBCOMMAND", required=True)
    adders = {
        "run": _add_run,
        "report": _add_report,
        "slice": _add_slice,
        "framework": _add_framework,
        "sweep": _add_sweep,
    }
    for name, add in adders.items():
        add(commands.add_parser(name, help=HELP[name]))


def _add_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS)
    p.add_argument("--layers", type=int, default=2, help="decoder layers in the slice (>= 2: dense + MoE)")
    p.add_argument(
        "--dense-layers",
        type=int,
        help="dense layers among them (default: the model's, clamped to leave one MoE layer)",
    )
    p.add_argument("--seq-lens", type=_csv(int), default=[2048, 4096, 8192, 16384], metavar="N,N,...")
    p.add_argument("--methods", type=_csv(_method), default=["lora", "full"], metavar="lora,full")
    p.add_argument("--checkpointing", type=_csv(_on_off), default=[True, False], metavar="on,off")
    p.add_argument(
        "--experts-impl",
        type=_csv(str),
        default=["default"],
        metavar="NAME,...",
        help="MoE expert implementations to compare: names the installed transformers offers "
        "(see --list-experts), `default` or `all`",
    )
    p.add_argument("--steps", type=int, default=3, help="measured steps per configuration (median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps first (allocations, kernel choice)")
    p.add_argument("--tiny", action="store_true", help="the replica's tiny shapes: runs on a CPU, for CI")
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when present, else cpu")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak for MFU when the card is not in the catalog")
    p.add_argument("--out", type=Path, help="append the records (JSON lines) to this file")
    p.add_argument(
        "--budget",
        type=_seconds,
        metavar="SECONDS",
        help="start a configuration only when its estimate fits in what is left; the rest is recorded as skipped",
    )
    p.add_argument(
        "--estimate-from",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="earlier records (JSON lines) whose timings the --budget estimates learn from",
    )
    p.add_argument("--list-experts", action="store_true", help="print the expert implementations and exit")
    p.add_argument(
        "--plan-only",
        metavar="GPU",
        nargs="?",
        const=DEFAULT_GPU,
        help=f"print the planner's figures for the matrix on GPU (default {DEFAULT_GPU}); run nothing",
    )
    p.set_defaults(func=cmd_bench)


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, nargs="+", help="JSON-lines files written by `bench --out`")
    p.add_argument(
        "--cpu",
        action="store_true",
        help="render CPU records (labelled as CPU figures); without it only GPU records are accepted",
    )
    p.add_argument("--fit", action="store_true", help="also fit the planner's coefficients and re-check it")
    p.add_argument(
        "--replan",
        action="store_true",
        help="recompute the planned figures with the planner as it is now (after changing it)",
    )
    p.set_defaults(func=cmd_report)


def _add_slice(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, choices=MODELS)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dense-layers", type=int)
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--device", default="cpu", help="where to initialise the weights (cuda is faster)")
    p.add_argument("--out", type=Path, required=True, help="a new folder")
    p.set_defaults(func=cmd_slice)


def _add_framework(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe id, e.g. llamafactory/glm45-air_lora_4xh100")
    p.add_argument("--slice", type=Path, required=True, help="folder written by `bench slice`")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--run-dir", type=Path, required=True, help="a new run directory")
    p.add_argument("--out", type=Path, help="append the record (JSON line) to this file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_framework)


def _add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", type=_seconds, required=True, metavar="SECONDS", help="wall time for everything")
    p.add_argument("--out", type=Path, help="results folder (default: bench/results/<UTC time>-<device>)")
    p.add_argument("--wheels", type=Path, help="folder made by bench/build_wheels.sh, for what the interpreter lacks")
    p.add_argument("--tiny", action="store_true", help="rehearse on a CPU: the replica's shapes, short sequences")
    p.add_argument("--steps", type=int, default=3, help="measured steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from finetune.bench import sweep
    from finetune.errors import FinetuneError

    if args.steps < 1 or args.warmup < 0:
        raise FinetuneError("--steps must be >= 1 and --warmup >= 0.")
    if args.wheels is not None and not args.wheels.is_dir():
        raise FinetuneError(f"--wheels {args.wheels}: no such folder (bench/build_wheels.sh makes it).")
    options = sweep.Options(
        python=Path(sys.executable),
        budget_s=args.budget,
        out=args.out,
        tiny=args.tiny,
        wheels=args.wheels.resolve() if args.wheels else None,
        steps=args.steps,
        warmup=args.warmup,
    )
    outcomes = sweep.Sweep(options, log=lambda line: print(line, flush=True)).run()
    return 0 if any(o.status == "ran" for o in outcomes) else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from finetune.bench import experts

    if args.list_experts:
        default = experts.default()
        for name in experts.available():
            print(f"{name:<12}{' (default)' if name == default else '':<11}{experts.describe(name)}")
        return 0
    from finetune.bench import measure
    from finetune.bench.run import Matrix, run_matrix
    from finetune.bench.slice import make_slice
    from finetune.errors import FinetuneError

    if args.steps < 1 or args.warmup < 0:
        raise FinetuneError("--steps must be >= 1 and --warmup >= 0.")
    piece = make_slice(args.model, args.layers, tiny=args.tiny, dense=args.dense_layers)
    matrix = Matrix(
        methods=tuple(dict.fromkeys(args.methods)),
        checkpointing=tuple(dict.fromkeys(args.checkpointing)),
        seq_lens=tuple(sorted(set(args.seq_lens))),
        experts_impls=tuple(experts.resolve(args.experts_impl)),
        steps=args.steps,
        warmup=args.warmup,
    )
    if args.plan_only:
        from finetune.bench.run import plan_only_table

        print("\n".join(plan_only_table(piece, matrix, args.plan_only)))
        return 0
    budget = estimator = None
    if args.budget is not None:
        from finetune.bench import records
        from finetune.bench.budget import Budget, Estimator

        budget = Budget.starting_now(args.budget)
    device = measure.detect(args.device, args.peak_tflops)
    if budget is not None:
        estimator = Estimator(device.kind, records.read([p for p in args.estimate_from if p.is_file()]))
    label = "GPU" if device.kind == "gpu" else "CPU (not GPU figures)"
    print(f"{label}: {device.name}; slice {piece.describe()}", file=sys.stderr)
    results = run_matrix(piece, matrix, device, args.out, budget=budget, estimator=estimator)
    statuses = {r["status"] for r in results}
    return 0 if "ok" in statuses and "error" not in statuses else 1


def cmd_report(args: argparse.Namespace) -> int:
    from finetune.bench import records, report

    rows = records.read(args.results)
    if args.replan:
        from finetune.bench.compare import replan

        rows = [replan(r) for r in rows]
    print(report.render(rows, allow_cpu=args.cpu, fit=args.fit))
    return 0


def cmd_slice(args: argparse.Namespace) -> int:
    from finetune.bench.slice import make_slice, save_slice

    piece = make_slice(args.model, args.layers, tiny=args.tiny, dense=args.dense_layers)
    print(save_slice(piece, args.out, device=args.device))
    return 0


def cmd_framework(args: argparse.Namespace) -> int:
    from finetune.bench.framework_step import run_framework_step

    record = run_framework_step(
        args.recipe, args.slice, args.run_dir, steps=args.steps, out=args.out, overrides=args.overrides
    )
    return 0 if record["status"] == "ok" else 1
