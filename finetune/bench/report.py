"""Markdown tables of benchmark records: measured beside planned, per configuration.

A GPU table is rendered only from GPU records of the real shapes. Records from a CPU run (or tiny shapes) are
refused there with an error, and rendered only when asked for explicitly, under a heading that says they are CPU
figures; so a CPU number can never pass for a GPU one.
"""

from __future__ import annotations

import json
from collections import defaultdict

from finetune.errors import FinetuneError

GIB = 1024**3


class NotGpuRecords(FinetuneError):
    """A GPU table was asked for from records that are not GPU measurements of the real shapes."""


def _gib(value) -> str:
    if value is None:
        return "-"
    return f"{value / GIB:.2f}" if value >= GIB / 10 else f"{value / GIB:.4f}"


def _ratio(value) -> str:
    return "-" if value is None else f"x{value:.2f}"


def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def check_gpu_records(records: list[dict]) -> None:
    """Refuse anything but GPU measurements of the real shapes, saying which records and why."""
    cpu = [r for r in records if r.get("device_kind") != "gpu"]
    if cpu:
        raise NotGpuRecords(
            f"{len(cpu)} of {len(records)} records were measured on `{cpu[0].get('device')}` "
            f"(device_kind `{cpu[0].get('device_kind')}`), not a GPU: a GPU table is never rendered from them. "
            "Run the benchmark on a GPU (bench/run_gpu.sh), or pass --cpu to render them labelled as CPU figures."
        )
    tiny = [r for r in records if (r.get("slice") or {}).get("tiny")]
    if tiny:
        raise NotGpuRecords(
            f"{len(tiny)} records ran the tiny replica shapes: they say nothing about GLM-4.5 on a "
            "GPU. Render them with --cpu (labelled), or measure the real slice."
        )


def train_table(records: list[dict]) -> list[str]:
    rows = [
        (
            "| model | layers (dense+MoE) | method | checkpointing | seq | experts | measured GiB | planned GiB "
            "| measured / planned | step s | tokens/s | planner tokens/s | MFU | status |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        if r.get("kind") != "train_step":
            continue
        s, c, p = r["slice"], r["config"], r.get("planned") or {}
        m = r.get("metrics") or {}
        speed = p.get("tokens_per_s")
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
        cells = [
            s["model"],
            f"{s['layers']} ({s['dense_layers']}+{s['moe_layers']})",
            c["method"],
            "on" if c["checkpointing"] else "off",
            f"{c['seq_len']:,}",
            c["experts_impl"],
            _gib(m.get("peak_memory_bytes")),
            _gib(p.get("memory_bytes")),
            _ratio((r.get("ratios") or {}).get("memory")),
            f"{m['step_time_s']:.3f}" if m else "-",
            f"{m['tokens_per_s']:,.0f}" if m else "-",
            f"{speed[0]:,.0f}-{speed[1]:,.0f}" if speed else "-",
            _pct(m.get("mfu")),
            status,
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def experts_table(records: list[dict]) -> list[str]:
    """Tokens/s per expert implementation, where one configuration ran with several."""
    groups: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in records:
        if r.get("kind") == "train_step":
            c, s = r["config"], r["slice"]
            groups[(s["model"], s["layers"], c["method"], c["checkpointing"], c["seq_len"])][c["experts_impl"]] = r
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    impls = sorted({impl for v in groups.values() for impl in v})
    rows = [
        "| model | layers | method | checkpointing | seq | " + " | ".join(f"{i} tokens/s (GiB)" for i in impls) + " |",
        "|---|---|---|---|---|" + "---|" * len(impls),
    ]
    for (model, layers, method, on, seq_len), by_impl in sorted(groups.items(), key=str):
        cells = []
        for impl in impls:
            r = by_impl.get(impl)
            if r is None:
                cells.append("-")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                m = r["metrics"]
                cells.append(f"{m['tokens_per_s']:,.0f} ({m['peak_memory_bytes'] / GIB:.2f})")
        rows.append(
            f"| {model} | {layers} | {method} | {'on' if on else 'off'} | {seq_len:,} | " + " | ".join(cells) + " |"
        )
    return rows


LOG_KEYS = ("loss", "elapsed_time", "memory(GiB)", "train_speed(s/it)", "current_steps", "global_step/max_steps")


def _log_excerpt(last_log: str | None) -> str:
    """The figures worth a table cell from a framework's last step log line."""
    if not last_log:
        return "-"
    row = json.loads(last_log)
    return ", ".join(f"{k} {row[k]}" for k in LOG_KEYS if k in row) or "-"


def framework_table(records: list[dict]) -> list[str]:
    steps = [r for r in records if r.get("kind") == "framework_step"]
    if not steps:
        return []
    rows = [
        "| recipe | slice | status | wall s | peak device memory GiB (nvidia-smi) | framework log |",
        "|---|---|---|---|---|---|",
    ]
    for r in steps:
        m = r.get("metrics") or {}
        status = r["status"] if r["status"] == "ok" or not r.get("reason") else f"{r['status']}: {r['reason']}"
        wall = f"{m['wall_s']:.0f}" if "wall_s" in m else "-"
        rows.append(
            f"| {r['recipe']} | {r.get('slice', {}).get('model', '?')} {r.get('slice', {}).get('layers', '?')}L "
            f"| {status} | {wall} | {_gib(m.get('peak_device_memory_bytes'))} "
            f"| {_log_excerpt(m.get('last_log'))} |"
        )
    return rows


def fit_section(records: list[dict]) -> list[str]:
    from finetune.bench.fit import fit

    result = fit(records)
    lines = [
        f"Fitted on {result['device']} ({result['device_kind']}):",
        "",
        "| checkpointing | scale on planned activations + logits | offset GiB | points |",
        "|---|---|---|---|",
    ]
    for mode, c in result["memory"].items():
        lines.append(
            f"| {mode.removeprefix('checkpointing_')} | {c['scale']:.3f} | {c['offset_bytes'] / GIB:.2f} "
            f"| {c['points']} |"
        )
    if result["per_moe_layer"]:
        header = "| model | method | checkpointing | seq | experts | one more MoE layer, KiB/token measured | planned |"
        lines += ["", header, "|---|---|---|---|---|---|---|"]
        for row in result["per_moe_layer"]:
            lines.append(
                f"| {row['model']} | {row['method']} | {'on' if row['checkpointing'] else 'off'} "
                f"| {row['seq_len']:,} | {row['experts_impl']} | {row['measured_bytes_per_token'] / 1024:.1f} "
                f"| {row['planned_bytes_per_token'] / 1024:.1f} |"
            )
    if result["mfu"]:
        lines += [
            "",
            "| model | method | checkpointing | experts | MFU reached | planner band |",
            "|---|---|---|---|---|---|",
        ]
        for row in result["mfu"]:
            band = row["planner_band"]
            lines.append(
                f"| {row['model']} | {row['method']} | {'on' if row['checkpointing'] else 'off'} "
                f"| {row['experts_impl']} | {row['mfu_min']:.1%}-{row['mfu_max']:.1%} "
                f"| {f'{band[0]:.1%}-{band[1]:.1%}' if band else '-'} |"
            )
    check = result["recheck"]
    if check.get("records"):
        summary = (
            f"Within 15 % of the measured peak: planner as it is {check['as_is_within_target']:.0%} of "
            f"{check['records']} configurations (worst {check['as_is_worst']:+.0%}); with the fitted terms "
            f"{check['fitted_within_target']:.0%} (worst {check['fitted_worst']:+.0%})."
        )
        lines += ["", summary]
    return lines


def _section(title: str, records: list[dict], fit: bool) -> list[str]:
    lines = [title, ""]
    versions = records[0].get("versions", {})
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".")
    if any(r.get("kind") == "train_step" for r in records):
        lines += ["", *train_table(records)]
    experts = experts_table(records)
    if experts:
        lines += ["", "Expert implementations side by side:", "", *experts]
    frameworks = framework_table(records)
    if frameworks:
        lines += ["", "Framework steps on the slice:", "", *frameworks]
    if fit and any(r.get("status") == "ok" and r.get("kind") == "train_step" for r in records):
        lines += ["", *fit_section(records)]
    return lines


def gpu_report(records: list[dict], fit: bool = False) -> str:
    """The GPU table; refuses CPU or tiny-shape records."""
    check_gpu_records(records)
    by_device: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_device[r["device"]].append(r)
    lines = []
    for device, group in by_device.items():
        lines += _section(f"### Measured on {device} (GPU)", group, fit) + [""]
    return "\n".join(lines).rstrip() + "\n"


def cpu_report(records: list[dict], fit: bool = False) -> str:
    """Every record, grouped by device; CPU groups say in their heading that they are not GPU figures."""
    by_device: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in records:
        by_device[(r["device_kind"], r["device"])].append(r)
    lines = []
    for (kind, device), group in by_device.items():
        if kind == "gpu" and not any((r.get("slice") or {}).get("tiny") for r in group):
            title = f"### Measured on {device} (GPU)"
        else:
            title = (
                f"### CPU run on `{device}`, tiny shapes: checks the harness; NOT GPU figures, and says nothing "
                "about GLM-4.5's memory or speed"
            )
        lines += _section(title, group, fit) + [""]
    return "\n".join(lines).rstrip() + "\n"


def render(records: list[dict], *, allow_cpu: bool = False, fit: bool = False) -> str:
    if not records:
        raise FinetuneError("No benchmark records to report.")
    return cpu_report(records, fit) if allow_cpu else gpu_report(records, fit)
