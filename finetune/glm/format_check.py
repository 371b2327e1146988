"""Format parity: does a recipe train GLM-4.5 on the text it reads and writes when served?

A small set of conversations covering every part of GLM-4.5's format (tool calls, parallel calls, tool results,
reasoning in the last and in earlier turns, thinking off) is prepared with the same writers `finetune prepare`
uses, rendered by the recipe's framework exactly as training will (its own loader and template, in its own
environment), and compared with GLM-4.5's official rendering (the model's chat template). Trained spans must be
each assistant turn as the model generates it, followed by the stop token it emits (`<|observation|>` after tool
calls, `<|user|>` after an answer); nothing of the prompt or tool results may be trained. docs/format.md says why.

Answers are cached by what they depend on, so `finetune launch` can ask every time.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.errors import FinetuneError, say
from finetune.glm.format import ASSISTANT, OBSERVATION, SYSTEM, USER
from finetune.paths import REPO_ROOT, cache_dir

_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
_SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "filters": {"type": "object"}}},
    },
}


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "arguments": arguments}}


CASES: list[dict[str, Any]] = [
    {
        "name": "answer",
        "messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}],
    },
    {
        "name": "system_and_reasoning",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Is 91 prime?"},
            {"role": "assistant", "reasoning_content": "91 = 7 * 13.", "content": "No, 91 = 7 x 13."},
        ],
    },
    {
        "name": "reasoning_in_earlier_turn",
        "messages": [
            {"role": "user", "content": "Pick a prime."},
            {"role": "assistant", "reasoning_content": "Small ones.", "content": "7"},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "reasoning_content": "Next one.", "content": "11"},
        ],
    },
    {
        "name": "thinking_off",
        "messages": [{"role": "user", "content": "Say hi./nothink"}, {"role": "assistant", "content": "Hi."}],
    },
    {
        "name": "tool_call",
        "tools": [_WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "tool_calls": [_call("get_weather", city="Paris")]},
            {"role": "tool", "content": '{"temperature": "21C"}'},
            {"role": "assistant", "content": "It is 21C in Paris."},
        ],
    },
    {
        "name": "parallel_calls_with_reasoning",
        "tools": [_WEATHER, _SEARCH],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Oslo and Rome, 3 days?"},
            {
                "role": "assistant",
                "reasoning_content": "Two cities: call both.",
                "content": "Checking both.",
                "tool_calls": [_call("get_weather", city="Oslo", days=3), _call("get_weather", city="Rome", days=3)],
            },
            {"role": "tool", "content": "rain"},
            {"role": "tool", "content": "sun"},
            {"role": "assistant", "reasoning_content": "Rome wins.", "content": "Oslo: rain. Rome: sun."},
        ],
    },
    {
        "name": "chained_calls",
        "tools": [_SEARCH],
        "messages": [
            {"role": "user", "content": "Find GLM-4.5 papers."},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [_call("search", query="GLM-4.5", filters={"year": 2025})],
            },
            {"role": "tool", "content": "[]"},
            {
                "role": "assistant",
                "reasoning_content": "Nothing; widen it.",
                "content": "",
                "tool_calls": [_call("search", query="GLM 4.5 arXiv", filters={})],
            },
            {"role": "tool", "content": '["arXiv:2508.06471"]'},
            {"role": "assistant", "content": "arXiv:2508.06471."},
        ],
    },
]


@dataclass
class Difference:
    row: str
    what: str  # "trained" (the loss) or "text" (context only)
    diff: str


@dataclass
class FormatReport:
    recipe: str
    framework: str
    template: str
    rows: int = 0
    differences: list[Difference] = field(default_factory=list)
    skipped: str | None = None  # why nothing was checked

    @property
    def trained_mismatch(self) -> bool:
        return any(d.what == "trained" for d in self.differences)

    def summary(self) -> str:
        if self.skipped:
            return f"format check skipped for {self.recipe}: {self.skipped}"
        if not self.differences:
            return (
                f"format: {self.rows} conversations render as GLM-4.5 does ({self.framework}, template {self.template})"
            )
        lines = [
            f"format: {len(self.differences)} difference(s) from GLM-4.5's rendering in {self.rows} conversations "
            f"({self.framework}, template {self.template}):"
        ]
        for d in self.differences:
            lines += [f"--- {d.row}: {d.what}", d.diff]
        return "\n".join(lines)


# -- what GLM-4.5 renders ------------------------------------------------------------------------------------------


def official(tokenizer, messages: list[dict], tools: list[dict] | None) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False)


def _span_end(piece: str) -> int:
    ends = [piece.find(t) for t in (USER, OBSERVATION, SYSTEM) if t in piece]
    return min(ends) if ends else len(piece)


def generated_turn(tokenizer, messages: list[dict], tools: list[dict] | None, index: int) -> str:
    """Assistant turn `index` as GLM-4.5 writes it when generating it (reasoning kept), plus its stop token: all
    that follows the generation prompt (which ends at `<|assistant|>`), so from the newline after the role token
    on. That newline is the first token a served model generates; a framework that leaves it in the prompt never
    trains it (docs/format.md)."""
    text = official(tokenizer, messages[: index + 1], tools)
    span = text.rsplit(ASSISTANT, 1)[1]
    return span + (OBSERVATION if messages[index].get("tool_calls") else USER)


def expected(tokenizer, messages: list[dict], tools: list[dict] | None, trained_from: int = 0) -> dict[str, Any]:
    """The training text and trained spans parity asks for: the official rendering with each assistant turn (from
    message `trained_from` on) as generated and ended by its stop token; earlier turns are context, as the
    official template writes context."""
    pieces = official(tokenizer, messages, tools).split(ASSISTANT)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    trained = []
    for k, index in enumerate(turns, start=1):
        if index < trained_from:
            continue
        turn = generated_turn(tokenizer, messages, tools, index)
        rest = pieces[k][_span_end(pieces[k]) :]  # the next role's token and what follows
        stop = OBSERVATION if messages[index].get("tool_calls") else USER
        pieces[k] = turn + rest.removeprefix(stop)
        trained.append(turn)
    return {"text": ASSISTANT.join(pieces), "trained": trained}


def expected_rows(tokenizer, canonical: dict[str, Any], kind: str) -> dict[str, Any]:
    tools = canonical.get("tools")
    if kind == "preference":
        prompt = canonical["messages"]
        return {k: expected(tokenizer, prompt + [canonical[k]], tools, len(prompt)) for k in ("chosen", "rejected")}
    return expected(tokenizer, canonical["messages"], tools)


# -- comparing -----------------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Readable lines: a break before every role token, newlines kept visible."""
    for token in (USER, ASSISTANT, SYSTEM, OBSERVATION):
        text = text.replace(token, "\x00" + token)
    return [line.replace("\n", "\\n") for line in text.split("\x00") if line]


def unified(expected_text: str, actual_text: str, label: str) -> str:
    return "\n".join(
        difflib.unified_diff(
            _lines(expected_text), _lines(actual_text), f"GLM-4.5 {label}", f"training {label}", lineterm="", n=2
        )
    )


def compare(name: str, want: dict[str, Any], got: dict[str, Any]) -> list[Difference]:
    out = []
    if got["trained"] != want["trained"]:
        out.append(
            Difference(name, "trained", unified("\n".join(want["trained"]), "\n".join(got["trained"]), "trained spans"))
        )
    if got["text"] != want["text"]:
        out.append(Difference(name, "text", unified(want["text"], got["text"], "text")))
    return out


def compare_dataset(names: list[str], wants: list[dict], gots: list[dict], kind: str) -> list[Difference]:
    if len(wants) != len(gots):
        return [
            Difference(
                "dataset",
                "trained",
                f"{len(wants)} conversations prepared, {len(gots)} rendered (the framework dropped some)",
            )
        ]
    out = []
    for name, want, got in zip(names, wants, gots, strict=False):
        if kind == "preference":
            for key in ("chosen", "rejected"):
                out += compare(f"{name} ({key})", want[key], got[key])
        else:
            out += compare(name, want, got)
    return out


# -- rendering through the framework -------------------------------------------------------------------------------

LF_DATA_ARGS = (
    "template",
    "enable_thinking",
    "mask_history",
    "preserve_thinking",
    "train_on_prompt",
    "tool_format",
    "default_system",
)
SWIFT_TEMPLATE_ARGS = (
    "agent_template",
    "loss_scale",
    "response_prefix",
    "enable_thinking",
    "preserve_thinking",
    "add_non_thinking_prefix",
    "default_system",
)


def template_settings(framework: str, config: dict[str, Any]) -> dict[str, Any]:
    """The config keys that change what the framework renders and trains."""
    keys = LF_DATA_ARGS if framework == "llamafactory" else (*SWIFT_TEMPLATE_ARGS, "template")
    settings = {k: config[k] for k in keys if config.get(k) is not None}
    settings.setdefault("template", "glm4_moe" if framework == "llamafactory" else "glm4_5")
    return settings


def render(framework, settings: dict[str, Any], dataset, tokenizer_dir: Path) -> list[dict]:
    if framework.name == "llamafactory":
        data_args = {k: v for k, v in settings.items() if k != "template"}
        request = {
            "model": str(tokenizer_dir),
            "template": settings["template"],
            "data_args": data_args,
            "datasets": [
                {"dir": str(dataset.llamafactory_dir), "name": dataset.llamafactory_train, "kind": dataset.kind}
            ],
        }
        module, key = "finetune.frameworks.trainer.llamafactory.render", "datasets"
    else:
        args = {k: v for k, v in settings.items() if k != "template"}
        request = {
            "tokenizer": str(tokenizer_dir),
            "template": settings["template"],
            "template_args": args,
            "files": [{"path": str(dataset.swift_train), "kind": dataset.kind}],
        }
        module, key = "finetune.frameworks.trainer.swift.render", "files"
    proc = subprocess.run(
        [str(framework.python()), "-m", module],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"},
    )
    out = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not out:
        raise FinetuneError(
            f"{framework.display_name} could not render the format check data ({module}):\n" + proc.stderr[-3000:]
        )
    return json.loads(out[-1])[key][0]["rows"]


def prepare_cases(folder: Path, cases: list[dict[str, Any]] | None = None):
    """The canonical conversations, prepared exactly as `finetune prepare` prepares a user's file."""
    from finetune.prepare.pipeline import PrepareOptions, prepare

    source = folder / "format_check.jsonl"
    rows = [{k: v for k, v in case.items() if k != "name"} for case in (cases or CASES)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = PrepareOptions([str(source)], "format_check", out_root=folder / "data", token_stats=False, progress=False)
    return prepare(options).dataset


# -- the check -----------------------------------------------------------------------------------------------------


_RENDERING_MODULES = (
    "finetune.glm.format_check",
    "finetune.glm.format",
    "finetune.prepare.writers",
    "finetune.frameworks.trainer.llamafactory.template",
    "finetune.frameworks.trainer.llamafactory.render",
    "finetune.frameworks.trainer.swift.render",
)


def _cache_key(framework, settings: dict, data: bytes, tokenizer_dir: Path) -> str:
    digest = hashlib.sha256(json.dumps([framework.name, settings], sort_keys=True, default=str).encode())
    digest.update(data)
    for module in _RENDERING_MODULES:  # a change to any of them can change the rendering
        digest.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    for name in ("chat_template.jinja", "tokenizer_config.json"):
        if (tokenizer_dir / name).is_file():
            digest.update((tokenizer_dir / name).read_bytes())
    env = framework.python().parent.parent
    for site in sorted(env.glob("lib/python*/site-packages")):
        digest.update(str(site.stat().st_mtime_ns).encode())
    return digest.hexdigest()[:32]


def check_format(
    recipe,
    config: dict[str, Any] | None = None,
    *,
    dataset=None,
    tokenizer_dir: Path | None = None,
    limit: int = 64,
    use_cache: bool = True,
) -> FormatReport:
    """Render `dataset` (a PreparedDataset; default: the canonical cases) through `recipe`'s framework with
    `config` (default: the recipe's) and compare with GLM-4.5's rendering by the tokenizer in `tokenizer_dir`
    (default: the replica of the recipe's model, whose chat template is GLM-4.5's byte for byte)."""
    from finetune.frameworks import get_framework

    config = recipe.config if config is None else config
    framework = get_framework(recipe.framework)
    settings = template_settings(framework.name, config)
    report = FormatReport(recipe.id, framework.display_name, str(settings["template"]))
    if recipe.meta.engine == "megatron":
        report.skipped = (
            "Megatron-SWIFT renders with ms-swift's same `glm4_5` template (checked by the ms-swift "
            "recipes); it cannot run without GPUs, so it is not rendered here"
        )
        return report
    if dataset is not None and dataset.kind == "rl":
        report.skipped = "RL prompts train no fixed answer; nothing to compare"
        return report
    if tokenizer_dir is None:
        from finetune.replica.build import ensure_replica

        tokenizer_dir = ensure_replica(recipe.meta.model)
    with tempfile.TemporaryDirectory() as tmp:
        if dataset is None:
            dataset = prepare_cases(Path(tmp))
            names = [c["name"] for c in CASES]
        else:
            names = []
        lines = dataset.canonical_train.read_text(encoding="utf-8").splitlines()[:limit]
        names = names or [f"{dataset.name} row {i + 1}" for i in range(len(lines))]
        key = _cache_key(framework, settings, "\n".join(lines).encode(), tokenizer_dir)
        cached = cache_dir() / "format-checks" / f"{key}.json"
        if use_cache and cached.is_file():
            data = json.loads(cached.read_text())
            return FormatReport(**{**data, "differences": [Difference(**d) for d in data["differences"]]})
        if len(lines) < dataset.manifest.counts.kept:
            dataset = _first_rows(dataset, lines, Path(tmp))
        say(
            f"format check: rendering {len(lines)} conversations with {framework.display_name}'s own loader and "
            "template, and with GLM-4.5's chat template (once per recipe and data; about 10-30 s)..."
        )
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        wants = [expected_rows(tokenizer, json.loads(line), dataset.kind) for line in lines]
        gots = render(framework, settings, dataset, tokenizer_dir)
        report.rows = len(wants)
        report.differences = compare_dataset(names, wants, gots, dataset.kind)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_file.write_text(json.dumps(asdict(report)))
    os.replace(tmp_file, cached)
    return report


def _first_rows(dataset, lines: list[str], folder: Path):
    """A large dataset is checked on its first rows, prepared again from its canonical form."""
    from finetune.prepare.pipeline import PrepareOptions, prepare

    source = folder / "first_rows.jsonl"
    source.write_text("".join(line + "\n" for line in lines))
    options = PrepareOptions(
        [str(source)],
        f"{dataset.name}_head",
        out_root=folder / "data",
        kind=dataset.kind,
        token_stats=False,
        progress=False,
    )
    return prepare(options).dataset
