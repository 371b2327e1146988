"""Format parity: does a recipe train its model on the text the model reads and writes when served?

A small set of conversations covering every part of the format (tool calls, parallel calls, tool results,
reasoning in the last and in earlier turns, thinking off) is prepared with the same writers `finetune prepare`
uses, rendered by the recipe's framework exactly as training will (its own loader and template, in its own
environment), and compared with the official rendering (the model's own chat template). Trained spans must be
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
import random
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.errors import say
from finetune.glm.format import ASSISTANT, OBSERVATION, SYSTEM, USER
from finetune.glm.format_render import render_many, template_settings
from finetune.paths import cache_dir

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


SAMPLE_SEED = 0  # the rows a large dataset is checked on are the same on every node and every launch

# The rejected answer of every preference case: reasoning and an answer, unlike any chosen one
REJECTED = {"role": "assistant", "reasoning_content": "A guess will do.", "content": "I am not sure."}


def cases(kind: str) -> list[dict[str, Any]]:
    """CASES in the shape a recipe of data `kind` trains on: conversations (sft); the prompt before the last
    answer with that answer chosen and REJECTED rejected (preference); that prompt alone (rl)."""
    if kind == "sft":
        return CASES
    out = []
    for case in CASES:
        messages = case["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        row = {**case, "messages": messages[:last]}
        if kind == "preference":
            row |= {"chosen": messages[last], "rejected": REJECTED}
        out.append(row)
    return out


@dataclass
class Difference:
    row: str
    what: str  # "trained" (the loss), "prompt" (an RL rollout prompt: what the policy learns to answer), "text"
    diff: str


@dataclass
class FormatReport:
    recipe: str
    framework: str
    template: str
    rows: int = 0
    differences: list[Difference] = field(default_factory=list)
    skipped: str | None = None  # why nothing was checked
    reference: str = "GLM-4.5"  # whose official rendering the training text is held to

    @property
    def trained_mismatch(self) -> bool:
        return any(d.what in ("trained", "prompt") for d in self.differences)

    def verdict(self) -> str:
        """One line: do the trained tokens (and RL prompts) equal the official ones? check-format's exit code
        follows it."""
        trained = {d.row for d in self.differences if d.what in ("trained", "prompt")}
        if trained:
            return f"verdict: {len(trained)} of {self.rows} rows differ in trained tokens"
        others = f" ({len(self.differences)} difference(s) in untrained text only)" if self.differences else ""
        return f"verdict: trained tokens identical in {self.rows} rows{others}"

    def summary(self) -> str:
        if self.skipped:
            return f"format check skipped for {self.recipe}: {self.skipped}"
        if not self.differences:
            return (
                f"format: {self.rows} conversations render as {self.reference} does ({self.framework}, "
                f"template {self.template})"
            )
        lines = [
            self.verdict(),
            f"format: {len(self.differences)} difference(s) from {self.reference}'s rendering in {self.rows} "
            f"conversations ({self.framework}, template {self.template}):",
        ]
        for d in self.differences:
            lines += [f"--- {d.row}: {d.what}", d.diff]
        return "\n".join(lines)


# -- what the model renders ------------------------------------------------------------------------------------------


def official(
    tokenizer, messages: list[dict], tools: list[dict] | None, generation_prompt: bool = False, **template_kwargs
) -> str:
    """The model's own chat template's rendering (`template_kwargs`: e.g. GLM-4.7's clear_thinking)."""
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=generation_prompt, **template_kwargs
    )


def _span_end(piece: str) -> int:
    ends = [piece.find(t) for t in (USER, OBSERVATION, SYSTEM) if t in piece]
    return min(ends) if ends else len(piece)


def generated_turn(tokenizer, messages: list[dict], tools: list[dict] | None, index: int) -> str:
    """Assistant turn `index` as the model writes it when generating it (reasoning kept), plus its stop token: all
    that follows the generation prompt (which ends at `<|assistant|>`), so from the newline after the role token
    on. That newline is the first token a served model generates; a framework that leaves it in the prompt never
    trains it (docs/format.md)."""
    text = official(tokenizer, messages[: index + 1], tools)
    span = text.rsplit(ASSISTANT, 1)[1]
    return span + (OBSERVATION if messages[index].get("tool_calls") else USER)


def expected(
    tokenizer, messages: list[dict], tools: list[dict] | None, trained_from: int = 0, **template_kwargs
) -> dict[str, Any]:
    """The training text and trained spans parity asks for: the official rendering with each assistant turn (from
    message `trained_from` on, unless marked `"trained": false`) as generated and ended by its stop token; other
    turns are context, as the official template writes context (with `template_kwargs`, e.g. clear_thinking)."""
    pieces = official(tokenizer, messages, tools, **template_kwargs).split(ASSISTANT)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    trained = []
    for k, index in enumerate(turns, start=1):
        if index < trained_from or messages[index].get("trained") is False:  # context only
            continue
        turn = generated_turn(tokenizer, messages, tools, index)
        rest = pieces[k][_span_end(pieces[k]) :]  # the next role's token and what follows
        stop = OBSERVATION if messages[index].get("tool_calls") else USER
        pieces[k] = turn + rest.removeprefix(stop)
        trained.append(turn)
    return {"text": ASSISTANT.join(pieces), "trained": trained}


def expected_rows(tokenizer, canonical: dict[str, Any], kind: str, **template_kwargs) -> dict[str, Any]:
    tools = canonical.get("tools")
    if kind == "rl":  # the prompt a rollout starts from, as a served model is prompted
        return {"prompt": official(tokenizer, canonical["messages"], tools, generation_prompt=True, **template_kwargs)}
    if kind == "preference":
        prompt = canonical["messages"]
        return {
            k: expected(tokenizer, prompt + [canonical[k]], tools, len(prompt), **template_kwargs)
            for k in ("chosen", "rejected")
        }
    return expected(tokenizer, canonical["messages"], tools, **template_kwargs)


def dataset_template_kwargs(dataset) -> dict[str, Any]:
    """The chat-template arguments a prepared dataset is trained and served with (clear_thinking)."""
    return {} if dataset.manifest.options.clear_thinking else {"clear_thinking": False}


# -- comparing -----------------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Readable lines: a break before every role token, newlines kept visible."""
    for token in (USER, ASSISTANT, SYSTEM, OBSERVATION):
        text = text.replace(token, "\x00" + token)
    return [line.replace("\n", "\\n") for line in text.split("\x00") if line]


def unified(expected_text: str, actual_text: str, label: str) -> str:
    return "\n".join(
        difflib.unified_diff(
            _lines(expected_text), _lines(actual_text), f"official {label}", f"training {label}", lineterm="", n=2
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
        if kind == "rl":
            if got["prompt"] != want["prompt"]:
                out.append(Difference(name, "prompt", unified(want["prompt"], got["prompt"], "rollout prompt")))
        elif kind == "preference":
            for key in ("chosen", "rejected"):
                out += compare(f"{name} ({key})", want[key], got[key])
        else:
            out += compare(name, want, got)
    return out


def prepare_cases(folder: Path, rows: list[dict[str, Any]] | None = None, kind: str = "sft"):
    """The canonical conversations (or `rows`) of data `kind`, prepared exactly as `finetune prepare` prepares a
    user's file."""
    from finetune.prepare.pipeline import PrepareOptions, prepare

    source = folder / "format_check.jsonl"
    rows = [{k: v for k, v in case.items() if k != "name"} for case in (rows or cases(kind))]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    options = PrepareOptions(
        [str(source)], "format_check", out_root=folder / "data", kind=kind, token_stats=False, progress=False
    )
    return prepare(options).dataset


# -- the check -----------------------------------------------------------------------------------------------------


_RENDERING_MODULES = (
    "finetune.glm.format_check",
    "finetune.glm.format_render",
    "finetune.glm.format",
    "finetune.prepare.writers",
    "finetune.frameworks.trainer.llamafactory.template",
    "finetune.frameworks.trainer.llamafactory.render",
    "finetune.frameworks.trainer.swift.render",
    "finetune.frameworks.trainer.swift.header_newline",
    "finetune.frameworks.trainer.swift.history_reasoning",
    "finetune.frameworks.trainer.swift.tool_schemas",
    "finetune.frameworks.trainer.swift.glm47",
    "finetune.frameworks.trainer.trained_spans",
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


@dataclass(frozen=True)
class FormatRequest:
    """One check: `dataset` (a PreparedDataset; default: the canonical cases in the recipe's data kind) through
    `recipe`'s framework with `config` (default: the recipe's), against the rendering of the chat template in
    `tokenizer_dir` (default: a replica carrying the recipe's model's official chat template byte for byte:
    reference_replica)."""

    recipe: Any
    config: dict[str, Any] | None = None
    dataset: Any = None
    tokenizer_dir: Path | None = None
    limit: int = 64
    use_cache: bool = True


@dataclass
class _Pending:
    """A check that must be rendered: its report so far, the rows to compare and where its answer is cached."""

    report: FormatReport
    settings: dict[str, Any]
    dataset: Any
    names: list[str]
    lines: list[str]
    tokenizer_dir: Path
    cached: Path


def check_format(
    recipe,
    config: dict[str, Any] | None = None,
    *,
    dataset=None,
    tokenizer_dir: Path | None = None,
    limit: int = 64,
    use_cache: bool = True,
) -> FormatReport:
    """One FormatRequest (its fields are the arguments)."""
    return check_formats([FormatRequest(recipe, config, dataset, tokenizer_dir, limit, use_cache)])[0]


def check_formats(requests: list[FormatRequest]) -> list[FormatReport]:
    """Every request's report; what is not cached is rendered in one process per framework and tokenizer."""
    from finetune.frameworks import get_framework

    reports: list[FormatReport | None] = [None] * len(requests)
    groups: dict[tuple[str, Path], list[tuple[int, _Pending]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for index, request in enumerate(requests):
            outcome = _plan(request, Path(tmp) / str(index))
            if isinstance(outcome, FormatReport):
                reports[index] = outcome
            else:
                groups.setdefault((request.recipe.framework, outcome.tokenizer_dir), []).append((index, outcome))
        for (framework_name, tokenizer_dir), pending in groups.items():
            framework = get_framework(framework_name)
            rows = sum(len(p.lines) for _, p in pending)
            say(
                f"format check: rendering {rows} conversations with {framework.display_name}'s own loader and "
                "template, and with the model's own chat template (once per recipe and data; about 10-30 s)..."
            )
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            rendered = render_many(framework, tokenizer_dir, [(p.settings, p.dataset) for _, p in pending])
            for (index, p), entry in zip(pending, rendered, strict=True):
                gots = entry["rows"]
                kwargs = dataset_template_kwargs(p.dataset)
                wants = [expected_rows(tokenizer, json.loads(line), p.dataset.kind, **kwargs) for line in p.lines]
                p.report.rows = len(wants)
                p.report.differences = compare_dataset(p.names, wants, gots, p.dataset.kind)
                _store(p.cached, p.report)
                reports[index] = p.report
    return reports


def _plan(request: FormatRequest, folder: Path) -> FormatReport | _Pending:
    """The finished report (skipped, or cached), or what must be rendered."""
    from finetune.frameworks import get_framework

    recipe = request.recipe
    config = recipe.config if request.config is None else request.config
    if request.dataset is not None and dataset_template_kwargs(request.dataset):
        config = {**config, "preserve_thinking": True}  # as a launch renders it (launch/resolve.py)
    framework = get_framework(recipe.framework)
    settings = template_settings(framework.name, config)
    from finetune.recipes.models import get_model

    reference = get_model(recipe.meta.model).chat.display_name
    report = FormatReport(recipe.id, framework.display_name, str(settings["template"]), reference=reference)
    dataset = request.dataset
    if recipe.meta.engine == "megatron":
        report.skipped = (
            "Megatron-SWIFT renders with ms-swift's same `glm4_5` template (checked by the ms-swift "
            "recipes); it cannot run without GPUs, so it is not rendered here"
        )
        return report
    if dataset is not None and dataset.kind == "rl" and framework.name != "swift":
        report.skipped = f"{framework.display_name} recipes train no RL prompts here"
        return report
    tokenizer_dir = request.tokenizer_dir
    if tokenizer_dir is None:
        tokenizer_dir = reference_replica(recipe.meta.model)
    folder.mkdir(parents=True)
    names: list[str] = []
    if dataset is None:
        from finetune.catalog import METHOD_DATA

        kind = METHOD_DATA[recipe.meta.method]
        dataset = prepare_cases(folder, kind=kind)
        names = [c["name"] for c in cases(kind)]
    numbered = sample_rows(dataset.canonical_train, request.limit)
    lines = [line for _, line in numbered]
    names = names or [f"{dataset.name} canonical/train.jsonl:{n}" for n, _ in numbered]
    reference = {"template_kwargs": dataset_template_kwargs(dataset)}  # what the official rendering is asked
    key = _cache_key(framework, {**settings, **reference}, "\n".join(lines).encode(), tokenizer_dir)
    cached = cache_dir() / "format-checks" / f"{key}.json"
    if request.use_cache and cached.is_file():
        data = json.loads(cached.read_text())
        return FormatReport(**{**data, "differences": [Difference(**d) for d in data["differences"]]})
    if len(lines) < dataset.manifest.counts.kept:
        dataset = _first_rows(dataset, lines, folder)
    return _Pending(report, settings, dataset, names, lines, tokenizer_dir, cached)


def sample_rows(path: Path, limit: int, seed: int = SAMPLE_SEED) -> list[tuple[int, str]]:
    """(line number, line) of every row of `path` up to `limit` rows; of a larger file, `limit` rows drawn with a
    fixed seed (reservoir sampling: one pass, `limit` lines held), in file order."""
    rng = random.Random(seed)
    kept: list[tuple[int, str]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if len(kept) < limit:
                kept.append((n, line))
            elif (j := rng.randrange(n)) < limit:
                kept[j] = (n, line)
    return sorted(kept)


def reference_replica(model: str) -> Path:
    """The replica whose chat template is `model`'s official one: the default model's when it has the same chat
    format, else the first such model of the catalog (GLM-4.5, -Air and 4.6 share one template byte for byte), so
    the recipes of one format share their renderings."""
    from finetune.catalog import DEFAULT_MODEL, MODELS
    from finetune.recipes.models import get_model
    from finetune.replica.build import ensure_replica

    chat = get_model(model).chat_format
    candidates = (DEFAULT_MODEL, *MODELS)
    return ensure_replica(next(m for m in candidates if get_model(m).chat_format == chat))


def _store(cached: Path, report: FormatReport) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_file.write_text(json.dumps(asdict(report)))
    os.replace(tmp_file, cached)


def _first_rows(dataset, lines: list[str], folder: Path):
    """A large dataset is checked on a sample of its rows (sample_rows), prepared again from their canonical form."""
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
        clear_thinking=dataset.manifest.options.clear_thinking,
    )
    return prepare(options).dataset
