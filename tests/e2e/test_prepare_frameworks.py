"""Round trips through the frameworks: every input layout -> canonical -> each framework's files -> the
framework's own loader and GLM-4.5 template -> the text GLM-4.5's official chat template produces.

The golden chat-template vectors are written in each input layout (OpenAI, OpenAI with JSON-text arguments and
inline think blocks, ShareGPT, Alpaca, prompt/completion), prepared, and rendered by ms-swift (its loader and
`glm4_5` template, in the swift environment) and by LLaMA-Factory (its loader through the dataset's
dataset_info.json). The bundled samples (parallel tool calls, reasoning, preference pairs, RL prompts) are
checked against the replica tokenizer, whose template reproduces the official one byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.frameworks import get_framework
from finetune.glm.format_render import render_many, template_settings
from finetune.prepare.pipeline import PrepareOptions, prepare
from finetune.recipes.recipe import resolve_recipe
from tests.conftest import REFERENCE_DIR, REPO_ROOT

STOP_TOKENS = ("<|user|>", "<|observation|>", "<|endoftext|>")
SAMPLE_KINDS = {"chat": "sft", "tools": "sft", "reasoning": "sft", "preference": "preference", "rl": "rl"}


# -- the golden conversations in every input layout -----------------------------------------------------------------


def _vectors() -> list[dict]:
    path = REFERENCE_DIR / "glm45-chat-template-vectors.jsonl"
    if not path.is_file():
        pytest.fail(f"golden chat-template vectors not found at {path}")
    vectors = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [v for v in vectors if not v.get("add_generation_prompt")]


def _inline(msg: dict) -> str:
    if msg.get("reasoning_content") is not None:
        return f"<think>{msg['reasoning_content']}</think>\n{msg['content']}"
    return msg["content"]


def as_openai(v: dict) -> dict | None:
    return {"messages": v["messages"], **({"tools": v["tools"]} if v.get("tools") else {})}


def as_openai_text(v: dict) -> dict | None:
    """JSON-text arguments, inline think blocks, content parts: what exported API logs often look like."""
    messages = []
    for m in v["messages"]:
        m = dict(m)
        if m["role"] == "assistant":
            m["content"] = _inline(m)
            m.pop("reasoning_content", None)
            for call in m.get("tool_calls", []):
                call["function"] = {**call["function"], "arguments": json.dumps(call["function"]["arguments"])}
        elif m["role"] == "user":
            m["content"] = [{"type": "text", "text": m["content"]}]
        messages.append(m)
    return {"messages": messages, **({"tools": json.dumps(v["tools"])} if v.get("tools") else {})}


def as_sharegpt(v: dict) -> dict | None:
    tags = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
    turns = []
    for m in v["messages"]:
        if m.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in m["tool_calls"]]
            turns.append({"from": "function_call", "value": json.dumps(calls)})
        else:
            turns.append({"from": tags[m["role"]], "value": _inline(m) if m["role"] == "assistant" else m["content"]})
    return {"conversations": turns, **({"tools": json.dumps(v["tools"])} if v.get("tools") else {})}


def as_alpaca(v: dict) -> dict | None:
    if v.get("tools"):
        return None
    messages = list(v["messages"])
    row = {}
    if messages[0]["role"] == "system":
        row["system"] = messages.pop(0)["content"]
    pairs = [(messages[i]["content"], _inline(messages[i + 1])) for i in range(0, len(messages) - 2, 2)]
    row.update(instruction=messages[-2]["content"], input="", output=_inline(messages[-1]))
    if pairs:
        row["history"] = pairs
    return row


def as_prompt(v: dict) -> dict | None:
    if v.get("tools") or len(v["messages"]) != 2:
        return None
    return {"prompt": v["messages"][0]["content"], "completion": _inline(v["messages"][1])}


LAYOUTS = {
    "openai": as_openai,
    "openai_text": as_openai_text,
    "sharegpt": as_sharegpt,
    "alpaca": as_alpaca,
    "prompt": as_prompt,
}


# -- preparing and rendering (once per module) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """{dataset name: (PreparedDataset, expected texts or None)} for every layout and every sample."""
    root = tmp_path_factory.mktemp("prepared")
    out = {}
    for layout, convert in LAYOUTS.items():
        pairs = [(row, v["expected"]) for v in _vectors() if (row := convert(v)) is not None]
        src = root / f"{layout}.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r, _ in pairs))
        ds = prepare(
            PrepareOptions([str(src)], f"golden_{layout}", out_root=root / "data", token_stats=False, progress=False)
        ).dataset
        assert ds.manifest.counts.kept == len(pairs)
        out[ds.name] = (ds, [e for _, e in pairs])
    for sample in SAMPLE_KINDS:
        ds = prepare(
            PrepareOptions(
                [str(REPO_ROOT / "data" / "samples" / f"{sample}.jsonl")],
                f"sample_{sample}",
                out_root=root / "data",
                token_stats=False,
                progress=False,
            )
        ).dataset
        out[ds.name] = (ds, None)
    return out


# the recipe whose template settings render each kind of data, as its training run renders it
SWIFT_RECIPE = {
    "sft": "swift/glm45-air_lora_4xh100",
    "preference": "swift/glm45-air_dpo_4xh100",
    "rl": "swift/glm45-air_grpo_4xh100",
}
LF_RECIPE = "llamafactory/glm45-air_lora_4xh100"


def _rendered(framework: str, replica: Path, datasets: dict) -> dict:
    """Each dataset through `framework`'s loader and template, with the settings of the recipe for its kind."""
    engine = get_framework(framework)
    recipe_for = (lambda kind: SWIFT_RECIPE[kind]) if framework == "swift" else (lambda kind: LF_RECIPE)
    jobs = [(template_settings(framework, resolve_recipe(recipe_for(ds.kind)).config), ds) for ds in datasets.values()]
    return dict(zip(datasets, render_many(engine, replica, jobs), strict=True))


@pytest.fixture(scope="module")
def swift_rendered(prepared, air_replica):
    return _rendered("swift", air_replica, {n: ds for n, (ds, _) in prepared.items()})


@pytest.fixture(scope="module")
def lf_rendered(prepared, air_replica):
    return _rendered("llamafactory", air_replica, {n: ds for n, (ds, _) in prepared.items() if ds.kind != "rl"})


@pytest.fixture(scope="module")
def tok(air_replica):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(air_replica)


# -- what GLM-4.5 renders ------------------------------------------------------------------------------------------


def official(tok, messages, tools=None, generation_prompt=False) -> str:
    return tok.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=generation_prompt
    )


def last_assistant_span(text: str) -> str:
    """What follows the last <|assistant|> of a rendering: the turn the model produces."""
    span = text.rsplit("<|assistant|>", 1)[1]
    for stop in ("<|user|>", "<|observation|>", "<|system|>"):
        span = span.split(stop)[0]
    return span


def assistant_spans(text: str) -> list[str]:
    return [last_assistant_span("<|assistant|>" + piece) for piece in text.split("<|assistant|>")[1:]]


def turn_spans(tok, row: dict) -> list[str]:
    """Each assistant turn as GLM-4.5 writes it when it is the turn being generated (reasoning kept)."""
    messages = row["messages"]
    return [
        last_assistant_span(official(tok, messages[: i + 1], row["tools"]))
        for i, m in enumerate(messages)
        if m["role"] == "assistant"
    ]


def trained(spans: list[str]) -> list[str]:
    """Trained spans without the stop token that ends each and the newline some templates put first."""
    out = []
    for span in spans:
        for stop in STOP_TOKENS:
            span = span.removesuffix(stop)
        out.append(span.removeprefix("\n"))
    return out


def canonical_rows(ds) -> list[dict]:
    return [json.loads(line) for line in ds.canonical_train.read_text(encoding="utf-8").splitlines()]


# -- ms-swift ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_swift_renders_the_golden_text(prepared, swift_rendered, layout):
    ds, expected = prepared[f"golden_{layout}"]
    rows = swift_rendered[ds.name]["rows"]
    assert len(rows) == len(expected) > 0
    for row, text in zip(rows, expected, strict=True):
        assert row["text"] == text + "<|user|>"  # ms-swift ends a sample with GLM-4.5's stop token
        assert trained(row["trained"]) == trained(assistant_spans(text))


@pytest.mark.parametrize("sample", ["chat", "tools", "reasoning"])
def test_swift_renders_the_samples_as_glm45(prepared, swift_rendered, tok, sample):
    ds, _ = prepared[f"sample_{sample}"]
    rows = swift_rendered[ds.name]["rows"]
    canon = canonical_rows(ds)
    assert len(rows) == len(canon) == ds.manifest.counts.kept
    for row, c in zip(rows, canon, strict=True):
        assert trained(row["trained"]) == trained(turn_spans(tok, c))
        earlier_reasoning = any(m.get("reasoning_content") for m in c["messages"][:-2])
        if not earlier_reasoning:  # GLM-4.5 drops reasoning of earlier turns; ms-swift trains on it by default
            assert row["text"] == official(tok, c["messages"], c["tools"]) + "<|user|>"


def test_swift_preference_pairs(prepared, swift_rendered, tok):
    ds, _ = prepared["sample_preference"]
    rows = swift_rendered[ds.name]["rows"]
    canon = canonical_rows(ds)
    assert len(rows) == len(canon) == 22
    for row, c in zip(rows, canon, strict=True):
        for key in ("chosen", "rejected"):
            assert row[key]["text"] == official(tok, c["messages"] + [c[key]], c["tools"]) + "<|user|>"


def test_swift_rl_prompts_keep_their_reference_fields(prepared, swift_rendered, tok):
    ds, _ = prepared["sample_rl"]
    result = swift_rendered[ds.name]
    assert {"messages", "tools", "solution", "problem_id"} <= set(result["columns"])
    canon = canonical_rows(ds)
    assert len(result["rows"]) == len(canon) == 24
    for row, c in zip(result["rows"], canon, strict=True):
        assert row["row"]["solution"] == c["solution"] and row["row"]["problem_id"] == c["problem_id"]
        assert row["prompt"] == official(tok, c["messages"], c["tools"], generation_prompt=True)


# -- LLaMA-Factory ------------------------------------------------------------------------------------------------


def test_llamafactory_loads_every_row_with_tool_calls_and_results(prepared, lf_rendered):
    for name, result in lf_rendered.items():
        ds, _ = prepared[name]
        canon = canonical_rows(ds)
        assert len(result["rows"]) == len(canon) == ds.manifest.counts.kept, name
        for row, c in zip(result["rows"], canon, strict=True):
            texts = [row["text"]] if ds.kind == "sft" else [row["chosen"]["text"], row["rejected"]["text"]]
            answers = [m for m in c["messages"] if m["role"] == "assistant"]
            answers += [c[k] for k in ("chosen", "rejected") if k in c]
            for m in c["messages"]:
                if m["role"] in ("user", "tool", "system"):
                    assert all(m["content"] in t for t in texts), (name, m)
            for m in answers:
                text = "".join(texts)
                assert m["content"].strip() in text and (m.get("reasoning_content") or "").strip() in text, (name, m)
                for call in m.get("tool_calls", []):
                    assert f"<tool_call>{call['function']['name']}" in text, (name, call)
                    for key in call["function"]["arguments"]:
                        assert f"<arg_key>{key}</arg_key>" in text, (name, call)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_llamafactory_trains_on_the_golden_assistant_turns(prepared, lf_rendered, layout):
    ds, expected = prepared[f"golden_{layout}"]
    rows = lf_rendered[ds.name]["rows"]
    assert len(rows) == len(expected)
    for row, text in zip(rows, expected, strict=True):
        assert trained(row["trained"]) == trained(assistant_spans(text))


@pytest.mark.parametrize("sample", ["chat", "tools", "reasoning", "preference"])
def test_llamafactory_trains_on_the_samples_as_glm45(prepared, lf_rendered, tok, sample):
    ds, _ = prepared[f"sample_{sample}"]
    for row, c in zip(lf_rendered[ds.name]["rows"], canonical_rows(ds), strict=False):
        if ds.kind == "preference":
            for key in ("chosen", "rejected"):
                expected = turn_spans(tok, {"messages": c["messages"] + [c[key]], "tools": c["tools"]})[-1:]
                assert trained(row[key]["trained"]) == trained(expected)
        else:
            assert trained(row["trained"]) == trained(turn_spans(tok, c))
