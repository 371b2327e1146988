"""`finetune prepare`: inputs, layouts, validation, the broken-input corpus, idempotence, samples, CLI.

Everything here runs the pipeline in-process on small files (token statistics off unless a test is about
them); tests/e2e/test_prepare_frameworks.py feeds the results to the frameworks themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.cli.prepare import recipe_limit
from finetune.errors import FinetuneError
from finetune.prepare.datasets import list_datasets, resolve_dataset
from finetune.prepare.layouts.base import ConvertOptions
from finetune.prepare.layouts.convert import RowConverter
from finetune.prepare.pipeline import PrepareOptions, prepare
from finetune.prepare.problems import RowProblem
from tests.conftest import REPO_ROOT, run_cli

SAMPLES = ("chat", "tools", "reasoning", "preference", "rl")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CHAT = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
TOOL_CHAT = {
    "tools": [WEATHER],
    "messages": [
        {"role": "user", "content": "Weather in Rome and Oslo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
                {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            ],
        },
        {"role": "tool", "content": "sunny"},
        {"role": "tool", "content": "rain"},
        {"role": "assistant", "content": "Rome is sunny, Oslo rainy."},
    ],
}


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(tmp_path: Path, inputs: list, name: str = "ds", **kwargs):
    kwargs.setdefault("token_stats", False)
    kwargs.setdefault("progress", False)
    return prepare(PrepareOptions(inputs=[str(p) for p in inputs], name=name, out_root=tmp_path / "out", **kwargs))


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def convert(row: dict, kind: str = "auto", **options) -> dict:
    return RowConverter(ConvertOptions(**options)).convert(row, kind).row


# -- layouts --------------------------------------------------------------------------------------------------------


def test_openai_tool_calls_become_canonical():
    row = convert(TOOL_CHAT)
    calls = row["messages"][1]["tool_calls"]
    assert [c["function"]["arguments"] for c in calls] == [{"city": "Rome"}, {"city": "Oslo"}]
    assert all(c["type"] == "function" for c in calls)
    assert [m["role"] for m in row["messages"]] == ["user", "assistant", "tool", "tool", "assistant"]
    assert row["tools"] == [WEATHER]


def test_inline_think_moves_to_reasoning_content_exactly():
    row = convert(
        {
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "<think>\n a b \n</think>\n\nAnswer."},
            ]
        }
    )
    assert row["messages"][1] == {"role": "assistant", "content": "\n\nAnswer.", "reasoning_content": "\n a b \n"}


def test_sharegpt_with_custom_tags_function_calls_and_joined_observations():
    row = convert(
        {
            "conversations": [
                {"from": "SYS", "value": "Be brief."},
                {"from": "HUMAN", "value": "Weather in Rome and Oslo?"},
                {
                    "from": "function_call",
                    "value": json.dumps(
                        [
                            {"name": "get_weather", "arguments": {"city": "Rome"}},
                            {"name": "get_weather", "arguments": {"city": "Oslo"}},
                        ]
                    ),
                },
                {"from": "observation", "value": "sunny\n</tool_response>\n<tool_response>\nrain"},
                {"from": "BOT", "value": "Sunny and rainy."},
            ],
            "tools": json.dumps([WEATHER]),
        },
        roles={"SYS": "system", "HUMAN": "user", "BOT": "assistant"},
    )
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert [m["content"] for m in row["messages"][3:5]] == ["sunny", "rain"]


def test_swift_layout_reads_back_text_then_calls():
    row = convert(
        {
            "messages": [
                {"role": "user", "content": "Weather?"},
                {"role": "assistant", "content": "<think>plan</think>\nChecking."},
                {"role": "tool_call", "content": '{"name": "get_weather", "arguments": {"city": "Rome"}}'},
                {"role": "tool_response", "content": "sunny"},
                {"role": "assistant", "content": "Sunny."},
            ],
            "tools": json.dumps([WEATHER]),
        }
    )
    msg = row["messages"][1]
    assert (msg["reasoning_content"], msg["content"], len(msg["tool_calls"])) == ("plan", "\nChecking.", 1)


def test_alpaca_with_history_and_system():
    row = convert(
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "S", "history": [["hi", "hello"]]}
    )
    assert row["messages"] == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "Translate\nchat"},
        {"role": "assistant", "content": "cat"},
    ]


@pytest.mark.parametrize(
    "row",
    [
        {
            "messages": [{"role": "user", "content": "q"}],
            "chosen": {"role": "assistant", "content": "good"},
            "rejected": {"role": "assistant", "content": "bad"},
        },
        {"prompt": "q", "chosen": "good", "rejected": "bad"},
        {
            "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
        },
        {"instruction": "q", "chosen": "good", "rejected": "bad"},
        {
            "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
            "rejected_response": "bad",
        },
        {
            "conversations": [{"from": "human", "value": "q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
    ],
    ids=["openai", "trl-prompt", "trl-conversations", "alpaca", "swift", "sharegpt"],
)
def test_preference_layouts_agree(row):
    converted = RowConverter(ConvertOptions()).convert(row, "auto")
    assert converted.kind == "preference"
    assert converted.row == {
        "messages": [{"role": "user", "content": "q"}],
        "tools": [],
        "chosen": {"role": "assistant", "content": "good"},
        "rejected": {"role": "assistant", "content": "bad"},
    }


def test_rl_prompts_keep_reference_fields_and_map_renames():
    converted = RowConverter(ConvertOptions(columns={"question": "prompt", "answer": "solution"})).convert(
        {"question": "2+2?", "answer": "4", "difficulty": 1}, "auto"
    )
    assert converted.kind == "rl"
    assert converted.row == {
        "messages": [{"role": "user", "content": "2+2?"}],
        "tools": [],
        "solution": "4",
        "difficulty": 1,
    }


# -- inputs ---------------------------------------------------------------------------------------------------------


def test_every_container_gives_the_same_canonical_rows(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        CHAT,
        {
            "messages": [
                {"role": "system", "content": "S"},
                {"role": "user", "content": 'é, "x"\n2'},
                {"role": "assistant", "content": "ok"},
            ]
        },
    ]
    flat = [{"messages": json.dumps(r["messages"], ensure_ascii=False)} for r in rows]
    inputs = {
        "jsonl": jsonl(tmp_path / "a.jsonl", rows),
        "json": tmp_path / "a.json",
        "csv": tmp_path / "a.csv",
        "parquet": tmp_path / "a.parquet",
        "datasets": tmp_path / "saved",
        "gz": tmp_path / "a.jsonl.gz",
    }
    inputs["json"].write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    import csv
    import gzip

    with open(inputs["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["messages"])
        writer.writeheader()
        writer.writerows(flat)
    pq.write_table(pa.Table.from_pylist(rows), inputs["parquet"])
    datasets.Dataset.from_list(rows).save_to_disk(str(inputs["datasets"]))
    inputs["gz"].write_bytes(gzip.compress(inputs["jsonl"].read_bytes()))
    canon = {}
    for key, path in inputs.items():
        result = run(tmp_path, [path], name=f"from_{key}")
        canon[key] = read(result.dataset.canonical_train)
    assert all(c == canon["jsonl"] for c in canon.values()), canon
    assert len(canon["jsonl"]) == 2


def test_several_files_and_folders_at_once(tmp_path):
    (tmp_path / "dir").mkdir()
    jsonl(tmp_path / "dir" / "a.jsonl", [CHAT])
    jsonl(tmp_path / "dir" / "b.jsonl", [TOOL_CHAT])
    single = jsonl(tmp_path / "c.jsonl", [{"instruction": "x", "output": "y"}])
    result = run(tmp_path, [tmp_path / "dir", single])
    manifest = result.dataset.manifest
    assert manifest.counts.kept == 3
    assert [s.rows_read for s in manifest.sources] == [1, 1, 1]
    assert manifest.statistics.layouts == {"alpaca": 1, "openai": 2}


def test_json_array_streams_elements_and_reports_their_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(
        '[\n  {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},\n'
        '  {"messages": [{"role": "user", "content": "q"}]}\n]\n'
    )
    with pytest.raises(FinetuneError, match=r"a\.json:3: messages: no assistant turn"):
        run(tmp_path, [path])


# -- the broken-input corpus ---------------------------------------------------------------------------------------

GOOD_LINE = json.dumps(CHAT)


def lines(*rows: dict) -> bytes:
    """The rows as a JSONL file's bytes."""
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def chat(*turns: tuple[str, str]) -> dict:
    """A row of (role, content) messages."""
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


BAD_ARGUMENTS = {"type": "function", "function": {"name": "get_weather", "arguments": "{city: Rome"}}
BROKEN = {
    # name: (file name, bytes, line of the problem or None for the file, what the message says)
    "truncated_json_line": ("t.jsonl", (GOOD_LINE + "\n" + GOOD_LINE[:40] + "\n").encode(), 2, "looks truncated"),
    "wrong_role_order": (
        "o.jsonl",
        lines(chat(("user", "a"), ("user", "b"), ("assistant", "c"))),
        1,
        "two user messages in a row",
    ),
    "undeclared_tool": (
        "u.jsonl",
        lines({**TOOL_CHAT, "tools": [{"type": "function", "function": {"name": "get_wether"}}]}),
        1,
        "calls `get_weather`, which is not a declared tool",
    ),
    "arguments_not_json": (
        "j.jsonl",
        lines(
            {
                **TOOL_CHAT,
                "messages": [
                    TOOL_CHAT["messages"][0],
                    {"role": "assistant", "content": "", "tool_calls": [BAD_ARGUMENTS]},
                    *chat(("tool", "x"), ("assistant", "y"))["messages"],
                ],
            }
        ),
        1,
        "arguments are not valid JSON",
    ),
    "tools_typed_differently": (
        "d.jsonl",
        lines(TOOL_CHAT, {**TOOL_CHAT, "tools": json.dumps([WEATHER])}),
        2,
        "typed differently across rows",
    ),
    "empty_file": ("e.jsonl", b"", None, "the file is empty"),
    "binary_file": ("b.jsonl", bytes(range(256)) * 4, None, "binary file"),
    "unknown_format": ("f.jsonl", b'{"text": "hello", "label": 1}\n', 1, "unknown format"),
    "non_utf8": ("n.jsonl", GOOD_LINE.replace("Hello!", "caf\xe9").encode("latin-1") + b"\n", 1, "not UTF-8"),
    "unanswered_tool_call": (
        "a.jsonl",
        lines(
            {
                **TOOL_CHAT,
                "messages": [*TOOL_CHAT["messages"][:2], *chat(("user", "?"), ("assistant", "x"))["messages"]],
            }
        ),
        1,
        "never answered",
    ),
    "unbalanced_think": (
        "k.jsonl",
        lines(chat(("user", "q"), ("assistant", "<think>never closed"))),
        1,
        "unbalanced think tags",
    ),
    "empty_turn": ("m.jsonl", lines(chat(("user", " "), ("assistant", "a"))), 1, "an empty user message"),
    "truncated_json_array": (
        "r.json",
        b'[{"messages": [{"role": "user", "content": "q"}, {"role": "ass',
        1,
        "looks truncated",
    ),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_input_gets_its_own_clear_error(tmp_path, name):
    file_name, data, line, what = BROKEN[name]
    path = tmp_path / file_name
    path.write_bytes(data)
    with pytest.raises(FinetuneError) as err:
        run(tmp_path, [path])
    message = str(err.value)
    location = f"{path}:{line}:" if line else f"{path}:"
    assert message.startswith(location), message
    assert what in message, message
    assert "--skip-invalid" in message and "Nothing was written" in message
    assert not (tmp_path / "out" / "ds").exists()


def test_skip_invalid_writes_every_broken_input_with_its_reason(tmp_path):
    paths = []
    for file_name, data, _, _ in BROKEN.values():
        paths.append(tmp_path / file_name)
        paths[-1].write_bytes(data)
    good = jsonl(tmp_path / "good.jsonl", [CHAT, TOOL_CHAT])
    result = run(tmp_path, [good, *paths], skip_invalid=True)
    rejects = read(result.dataset.root / "rejects.jsonl")
    by_file = {}
    for entry in rejects:
        by_file.setdefault(Path(entry["location"].split(":")[0]).name, []).append(entry)
    for name, (file_name, _, line, what) in BROKEN.items():
        entries = by_file.get(file_name)
        assert entries and len(entries) == 1, (name, entries)
        assert what in entries[0]["error"] + " " + entries[0]["field"], (name, entries[0])
        assert entries[0]["fix"]
        if line:
            assert entries[0]["location"].endswith(f":{line}"), entries[0]
    counts = result.dataset.manifest.counts
    # the good file's two rows, plus the good first rows of the truncated-line and typed-differently files
    whole_files = [n for n, (_, _, line, _) in BROKEN.items() if line is None]
    assert (counts.rejected, counts.rejected_files) == (len(BROKEN) - len(whole_files), len(whole_files))
    assert counts.kept == 4 and counts.read == counts.kept + counts.rejected
    assert result.rejected_examples and len(read(result.dataset.canonical_train)) == 4


def test_all_rows_rejected_is_an_error(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(BROKEN["unknown_format"][1])
    with pytest.raises(FinetuneError, match="No valid rows"):
        run(tmp_path, [path], skip_invalid=True)


# -- validation rules -----------------------------------------------------------------------------------------------


def with_calls(*calls: dict) -> dict:
    """TOOL_CHAT's question, an assistant turn making `calls`, a result and an answer."""
    turn = {"role": "assistant", "content": "", "tool_calls": list(calls)}
    return {
        **TOOL_CHAT,
        "messages": [TOOL_CHAT["messages"][0], turn, *chat(("tool", "r"), ("assistant", "a"))["messages"]],
    }


LIST_ARGUMENTS = {"type": "function", "function": {"name": "get_weather", "arguments": "[1, 2]"}}
IMAGE = [{"type": "image_url", "image_url": {"url": "x"}}]
RULES = [
    (chat(("assistant", "a")), "must start with a user message"),
    (
        chat(("user", "q"), ("assistant", "a"), ("system", "s"), ("user", "q2"), ("assistant", "a2")),
        "system message after the start",
    ),
    (chat(("user", "q"), ("assistant", "a"), ("assistant", "b")), "two assistant messages in a row"),
    (chat(("user", "q"), ("tool", "r"), ("assistant", "a")), "answers no tool call"),
    (
        {
            "messages": [
                *chat(("user", "q"))["messages"],
                {"role": "assistant", "content": "", "reasoning_content": "hmm"},
            ]
        },
        "reasoning but no answer",
    ),
    (chat(("user", "q"), ("assistant", "a <think>x</think>")), "does not open the message"),
    (chat(("user", "q"), ("assistant", "x</think>a")), "without an opening"),
    (
        {
            "messages": [
                *chat(("user", "q"))["messages"],
                {"role": "assistant", "content": "<think>x</think>a", "reasoning_content": "y"},
            ]
        },
        "reasoning is given twice",
    ),
    ({**TOOL_CHAT, "messages": [*TOOL_CHAT["messages"][:3], TOOL_CHAT["messages"][4]]}, "never answered"),
    (with_calls(LIST_ARGUMENTS), "must be a JSON object"),
    ({**chat(("user", "q")), "chosen": "same", "rejected": "same"}, "the same answer"),
    (
        {
            "chosen": chat(("user", "q1"), ("assistant", "a"))["messages"],
            "rejected": chat(("user", "q2"), ("assistant", "b"))["messages"],
        },
        "do not share a prompt",
    ),
    (chat(("user", IMAGE), ("assistant", "a")), "only text content"),
    (chat(("narrator", "q"), ("assistant", "a")), "unknown role `narrator`"),
]


@pytest.mark.parametrize("row, what", RULES, ids=lambda v: v if isinstance(v, str) else "")
def test_validation_rules(row, what):
    from finetune.prepare.validate import validate_row

    with pytest.raises(RowProblem) as err:
        converted = RowConverter(ConvertOptions()).convert(row, "auto")
        validate_row(converted.row, converted.kind)
    assert what in str(err.value), str(err.value)
    assert err.value.fix


def test_kind_is_fixed_by_the_first_row(tmp_path):
    path = jsonl(tmp_path / "mixed.jsonl", [CHAT, {"prompt": "q", "chosen": "a", "rejected": "b"}])
    with pytest.raises(FinetuneError, match=r"mixed\.jsonl:2: this row is a preference pair"):
        run(tmp_path, [path])


def test_rl_reference_fields_must_keep_one_type(tmp_path):
    path = jsonl(tmp_path / "rl.jsonl", [{"prompt": "q", "solution": "4"}, {"prompt": "q2", "solution": 4}])
    with pytest.raises(FinetuneError, match=r"rl\.jsonl:2: solution: .* typed differently"):
        run(tmp_path, [path])


# -- outputs, duplicates, splits, idempotence ------------------------------------------------------------------------


def test_outputs_layout_and_manifest(tmp_path):
    path = jsonl(
        tmp_path / "a.jsonl",
        [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(200)
        ],
    )
    ds = run(tmp_path, [path], name="mine", val_ratio=0.2).dataset
    files = sorted(str(p.relative_to(ds.root)) for p in ds.root.rglob("*") if p.is_file())
    assert files == [
        "canonical/train.jsonl",
        "canonical/val.jsonl",
        "dataset_info.json",
        "llamafactory/train.jsonl",
        "llamafactory/val.jsonl",
        "manifest.json",
        "swift/train.jsonl",
        "swift/val.jsonl",
    ]
    m = ds.manifest
    assert m.counts.train + m.counts.val == 200 and 20 < m.counts.val < 60
    assert m.content_hash.startswith("sha256:") and m.kind == "sft"
    for rel, info in m.outputs.items():
        assert len((ds.root / rel).read_text().splitlines()) == info.rows
    registry = json.loads((ds.root / "dataset_info.json").read_text())
    assert set(registry) == {"mine", "mine_val"}
    assert registry["mine_val"]["file_name"] == "llamafactory/val.jsonl"
    assert (ds.llamafactory_dir, ds.llamafactory_train, ds.llamafactory_val) == (ds.root, "mine", "mine_val")
    assert ds.swift_val == ds.root / "swift" / "val.jsonl" and ds.canonical_train.is_file()
    # the split follows the content: the same rows in another order land in the same splits
    shuffled = jsonl(tmp_path / "b.jsonl", list(reversed(read(path))))
    again = run(tmp_path, [shuffled], name="mine2", val_ratio=0.2).dataset
    assert sorted(map(json.dumps, read(again.canonical_val or Path()))) == sorted(
        map(json.dumps, read(ds.canonical_val or Path()))
    )


def test_duplicates_are_reported_and_dropped_on_request(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [CHAT, TOOL_CHAT, CHAT, CHAT])
    kept = run(tmp_path, [path], name="keep")
    assert (kept.dataset.manifest.counts.duplicates, kept.dataset.manifest.counts.kept) == (2, 4)
    assert kept.duplicate_examples[0].startswith(f"{path}:3")
    dropped = run(tmp_path, [path], name="drop", dedupe=True)
    assert (dropped.dataset.manifest.counts.duplicates_dropped, dropped.dataset.manifest.counts.kept) == (
        2,
        2,
    )


def test_second_run_is_a_no_op_and_a_different_dataset_is_never_overwritten(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", [CHAT])
    first = run(tmp_path, [path])
    stamp = first.dataset.canonical_train.stat().st_mtime_ns
    second = run(tmp_path, [path])
    assert (first.status, second.status) == ("written", "unchanged")
    assert second.dataset.canonical_train.stat().st_mtime_ns == stamp
    jsonl(path, [CHAT, TOOL_CHAT])
    with pytest.raises(FinetuneError, match="never overwritten.*--force"):
        run(tmp_path, [path])
    with pytest.raises(FinetuneError, match="never overwritten"):
        run(tmp_path, [path.with_name("a.jsonl")], val_ratio=0.5)  # other options: a different dataset too
    replaced = run(tmp_path, [path], force=True)
    assert replaced.status == "replaced" and replaced.dataset.manifest.counts.kept == 2
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_resolve_and_list_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNE_DATA_ROOT", str(tmp_path / "root"))
    prepare(
        PrepareOptions(
            inputs=[str(jsonl(tmp_path / "a.jsonl", [CHAT]))], name="alpha", token_stats=False, progress=False
        )
    )
    assert list_datasets() == ["alpha"]
    assert resolve_dataset("alpha").kind == "sft"
    with pytest.raises(FinetuneError, match=r"No prepared dataset `alpah`.*Did you mean `alpha`.*alpha"):
        resolve_dataset("alpah")
    # a dataset an older `prepare` wrote (a manifest without this version's keys) is named as such, with the fix
    manifest = tmp_path / "root" / "alpha" / "manifest.json"
    data = json.loads(manifest.read_text())
    del data["placeholders"]
    manifest.write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(FinetuneError, match=r"prepared by an older `finetune prepare` \(format 2; .*--force"):
        resolve_dataset("alpha")


def test_rl_dataset_has_no_llamafactory_form(tmp_path):
    ds = run(tmp_path, [jsonl(tmp_path / "rl.jsonl", [{"prompt": "2+2?", "solution": "4"}])]).dataset
    assert ds.kind == "rl" and not (ds.root / "dataset_info.json").exists()
    assert read(ds.swift_train) == [{"messages": [{"role": "user", "content": "2+2?"}], "tools": "[]", "solution": "4"}]
    with pytest.raises(FinetuneError, match="SWIFT GRPO"):
        _ = ds.llamafactory_train


def test_token_stats_count_rows_over_the_recipe_sequence_length(tmp_path):
    long = {"messages": [{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "ok"}]}
    result = run(
        tmp_path,
        [jsonl(tmp_path / "a.jsonl", [CHAT, long])],
        token_stats=True,
        limit=recipe_limit("llamafactory/glm45-air_lora_4xh100"),
    )
    stats = result.dataset.manifest.token_stats
    assert stats.seq_len == 4096 and stats.rows_over_seq_len == 1
    assert stats.examples_over_seq_len[0].startswith("canonical/train.jsonl:")
    assert stats.lengths.max > 5000 and "upper bound" in stats.tokenizer


def test_token_stats_count_with_the_tokenizer_of_the_model_named_and_say_which(tmp_path):
    """Without --tokenizer, the replica of the --recipe's model counts (its official chat template): GLM-4.7's
    rendering has no newline after role tokens, so the same row is shorter than under GLM-4.5's; `--tokenizer NAME`
    names a model's replica directly."""
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    source = jsonl(tmp_path / "a.jsonl", [row])
    glm47 = run(tmp_path / "47", [source], token_stats=True, limit=recipe_limit("swift/glm47_lora_16xh100"))
    glm45 = run(tmp_path / "45", [source], token_stats=True, limit=recipe_limit("swift/glm45_lora_16xh100"))
    named = run(tmp_path / "named", [source], token_stats=True, tokenizer="glm-4.7")
    stats47, stats45 = glm47.dataset.manifest.token_stats, glm45.dataset.manifest.token_stats
    assert stats47.tokenizer.startswith("glm-4.7 replica (GLM-4.7's chat template;")
    assert stats45.tokenizer.startswith("glm-4.5 replica (GLM-4.5's chat template;")
    # [gMASK]<sop><|user|>Hi<|assistant|></think>Hello!<|user|> against GLM-4.5's three more newlines and <think>
    assert stats45.lengths.max - stats47.lengths.max == 4
    named_stats = named.dataset.manifest.token_stats
    assert (named_stats.tokenizer, named_stats.lengths) == (stats47.tokenizer, stats47.lengths)


@pytest.mark.parametrize(
    ("recipe_id", "handling"),
    [
        ("llamafactory/glm45-air_lora_4xh100", "LLaMA-Factory keeps the turns that fit and shortens the turn that"),
        ("swift/glm45-air_lora_4xh100", "ms-swift deletes them: they are never trained (max_length: 4096, "),
        ("swift/glm45-air_dpo_4xh100", "ms-swift keeps their last 2,048 tokens: the start of the prompt"),
    ],
)
def test_token_stats_say_per_split_what_the_recipes_framework_does_with_longer_rows(recipe_id, handling, tmp_path):
    """Each framework's own handling (LLaMA-Factory shortens turns, ms-swift deletes rows by default, the DPO
    recipes cut the prompt), counted per split against the limit the recipe sets (4,096 / 2,048 tokens)."""
    long_prompt = [{"role": "user", "content": "y" * 4200}]
    if "dpo" in recipe_id:
        rows = [{"messages": long_prompt, "chosen": f"ok {i}", "rejected": "no"} for i in range(6)]
        rows += [
            {"messages": [{"role": "user", "content": f"q{i}"}], "chosen": "a", "rejected": "b"} for i in range(10)
        ]
    else:
        rows = [{"messages": [*long_prompt, {"role": "assistant", "content": f"ok {i}"}]} for i in range(6)]
        rows += [
            {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            for i in range(10)
        ]
    result = run(
        tmp_path, [jsonl(tmp_path / "a.jsonl", rows)], token_stats=True, val_ratio=0.3, limit=recipe_limit(recipe_id)
    )
    stats, counts = result.dataset.manifest.token_stats, result.dataset.manifest.counts
    assert sum(stats.over_by_split.values()) == stats.rows_over_seq_len == 6
    assert stats.rows_by_split == {"train": counts.train, "val": counts.val} and counts.val > 0
    assert stats.handling.startswith(handling), stats.handling


# -- samples, CLI, benchmark ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES)
def test_bundled_samples_are_prepared_and_up_to_date(sample, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO_ROOT)
    folder = REPO_ROOT / "data" / "prepared" / f"sample_{sample}"
    assert (folder / "manifest.json").is_file(), (
        f"run: python -m finetune prepare data/samples/{sample}.jsonl --name sample_{sample}"
    )
    result = prepare(
        PrepareOptions(
            inputs=[f"data/samples/{sample}.jsonl"],
            name=f"sample_{sample}",
            out_root=REPO_ROOT / "data" / "prepared",
            progress=False,
        )
    )
    assert result.status == "unchanged", f"data/prepared/sample_{sample} is out of date: prepare it with --force"
    counts = result.dataset.manifest.counts
    assert 20 <= counts.kept <= 40 and counts.rejected == 0
    assert result.dataset.manifest.sources[0].path == f"data/samples/{sample}.jsonl"
    # the committed files are what today's code writes (a change to the writers must re-prepare the samples)
    fresh = prepare(
        PrepareOptions(
            inputs=[f"data/samples/{sample}.jsonl"],
            name=f"sample_{sample}",
            out_root=tmp_path,
            token_stats=False,
            progress=False,
        )
    ).dataset
    assert fresh.manifest.outputs == result.dataset.manifest.outputs
    assert fresh.manifest.statistics == result.dataset.manifest.statistics


def test_cli_reports_the_first_bad_row_and_exits_2(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(BROKEN["wrong_role_order"][1])
    proc = run_cli("prepare", str(path), "--name", "x", "--out-root", str(tmp_path / "out"), "--no-token-stats")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {path}:1: messages[1].role: a user message out of order"), proc.stderr
    proc = run_cli(
        "prepare",
        str(path),
        str(jsonl(tmp_path / "ok.jsonl", [CHAT])),
        "--name",
        "x",
        "--out-root",
        str(tmp_path / "out"),
        "--no-token-stats",
        "--skip-invalid",
    )
    assert proc.returncode == 0, proc.stderr
    assert "kept" in proc.stdout and "rejected" in proc.stdout and "rejects.jsonl" in proc.stdout


def test_benchmark_script_runs_at_small_scale(tmp_path):
    proc = subprocess.run(
        [sys.executable, "bench/prepare_bench.py", "--rows", "400", "--workdir", str(tmp_path)],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr
    assert "| 400 |" in proc.stdout and "rows/s" in proc.stdout
    assert "rejected 0" in proc.stderr


def test_kto_rows_are_refused_with_what_the_label_means(tmp_path):
    """KTO data (TRL / ms-swift `label`, LLaMA-Factory `kto_tag`) is not silently prepared as SFT: its undesirable
    answers would be trained as good ones."""
    trl = jsonl(
        tmp_path / "kto.jsonl",
        [
            {
                "prompt": [{"role": "user", "content": "2+2?"}],
                "completion": [{"role": "assistant", "content": "4"}],
                "label": True,
            },
            {
                "prompt": [{"role": "user", "content": "2+2?"}],
                "completion": [{"role": "assistant", "content": "5"}],
                "label": False,
            },
        ],
    )
    with pytest.raises(FinetuneError, match=r"kto.jsonl:1: label: a KTO row: `label` marks its answer as desirable"):
        run(tmp_path, [trl])
    lf = jsonl(
        tmp_path / "lf_kto.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "bye"}], "kto_tag": False}],
    )
    with pytest.raises(FinetuneError, match=r"lf_kto.jsonl:1: kto_tag: .*no recipe here trains KTO"):
        run(tmp_path, [lf])
    labelled = jsonl(  # a label that is not KTO's flag (a category) is just a column
        tmp_path / "topics.jsonl",
        [
            {
                "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "bye"}],
                "label": "greeting",
            }
        ],
    )
    assert run(tmp_path, [labelled], name="topics").dataset.manifest.counts.kept == 1
