"""Agent data as users bring it: trajectories that end in a tool call, LLaMA-Factory's typed-content messages
(reasoning and tool-call parts, parallel results as one JSON list, loss weights), and what each becomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.prepare.layouts.base import ConvertOptions
from finetune.prepare.layouts.convert import RowConverter
from finetune.prepare.problems import RowProblem
from finetune.prepare.validate import validate_row
from finetune.prepare.writers import lf_messages, swift_row

FIXTURE = Path(__file__).parents[2] / "e2e" / "fixtures" / "agent_trajectories.jsonl"
SEARCH = [{"name": "search", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]


def convert(row: dict) -> dict:
    converted = RowConverter(ConvertOptions()).convert(row, "auto")
    validate_row(converted.row, converted.kind)
    return converted.row


def part(kind: str, value: str) -> dict:
    return {"type": kind, "value": value}


def call(q: str) -> dict:
    return part("tool_call", json.dumps({"name": "search", "arguments": {"q": q}}))


def fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_a_trajectory_that_ends_in_a_tool_call_is_an_sft_row_ending_in_that_call():
    row = convert(fixture_rows()[1])
    last = row["messages"][-1]
    assert last["role"] == "assistant" and last["reasoning_content"] == "Search first."
    assert last["tool_calls"][0]["function"] == {"name": "search", "arguments": {"query": "GLM-4.5 technical report"}}
    assert lf_messages(row["messages"])[-1]["role"] == "function_call"  # LLaMA-Factory trains it as a call
    swift = swift_row(row, "sft")["messages"]
    assert [m["role"] for m in swift[-2:]] == ["assistant", "tool_call"]


def test_calls_left_unanswered_before_the_end_are_still_refused():
    calls = [call("a"), call("b")]
    for messages in (
        [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": calls},
            {"role": "user", "content": "?"},
            {"role": "assistant", "content": "x"},
        ],
        # one of two parallel calls answered, then the row ends
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": calls}, {"role": "tool", "content": "1"}],
    ):
        with pytest.raises(RowProblem, match="never answered"):
            convert({"tools": SEARCH, "messages": messages})


def test_typed_content_is_read_part_by_part():
    row = convert(fixture_rows()[0])
    assert row["messages"][2] == {
        "role": "assistant",
        "content": "Checking both.",
        "reasoning_content": "Two cities, two calls.",
        "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}},
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Quito"}}},
        ],
    }
    # the two parallel results, given as one tool message holding a JSON list, are one message each, in order
    assert row["messages"][3:5] == [
        {"role": "tool", "content": '{"temp_c": 19}'},
        {"role": "tool", "content": "cloudy, 13C"},
    ]
    assert row["messages"][5]["reasoning_content"] == "19 > 13."


def test_a_listed_result_is_split_only_when_it_answers_every_parallel_call():
    one_call = {
        "tools": SEARCH,
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [call("a")]},
            {"role": "tool", "content": [part("text", '["x", "y"]')]},
            {"role": "assistant", "content": "done"},
        ],
    }
    assert convert(one_call)["messages"][2] == {"role": "tool", "content": '["x", "y"]'}  # one call: one result


def test_a_typed_content_pair_is_read_as_a_preference_pair():
    """LLaMA-Factory's newer pair format: two whole typed conversations sharing the prompt, the answers with
    reasoning and a tool call, tools as JSON text."""
    prompt = [{"role": "system", "content": [part("text", "Be brief.")]}, {"role": "user", "content": "find x"}]
    chosen = {"role": "assistant", "content": [part("reasoning", "Search it."), part("text", "On it."), call("x")]}
    rejected = {"role": "assistant", "content": [part("text", "No.")]}
    row = {"chosen_messages": [*prompt, chosen], "rejected_messages": [*prompt, rejected], "tools": json.dumps(SEARCH)}
    converted = RowConverter(ConvertOptions()).convert(row, "auto")
    validate_row(converted.row, converted.kind)
    assert converted.kind == "preference"
    assert converted.row["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "find x"},
    ]
    assert converted.row["chosen"] == {
        "role": "assistant",
        "content": "On it.",
        "reasoning_content": "Search it.",
        "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": {"q": "x"}}}],
    }
    assert converted.row["rejected"] == {"role": "assistant", "content": "No."}


def test_a_turn_with_loss_weight_zero_is_context_that_swift_does_not_train():
    row = convert(
        {
            "tools": SEARCH,
            "messages": [
                {"role": "user", "content": [part("text", "q")], "loss_weight": 0.0},
                {"role": "assistant", "content": [part("text", "a draft")], "loss_weight": 0.0},
                {"role": "user", "content": [part("text", "again")], "loss_weight": 0.0},
                {"role": "assistant", "content": [part("text", "the answer")], "loss_weight": 1.0},
            ],
        }
    )
    assert row["messages"][1] == {"role": "assistant", "content": "a draft", "trained": False}
    assert "trained" not in row["messages"][3]
    swift = swift_row(row, "sft")["messages"]
    assert swift[1] == {"role": "assistant", "content": "a draft", "loss": False} and "loss" not in swift[3]


@pytest.mark.parametrize(
    "messages, what",
    [
        (
            [{"role": "user", "content": [part("image_url", "x.png")]}, {"role": "assistant", "content": "a"}],
            "found a `image_url` part",
        ),
        (
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [part("text", "a")], "loss_weight": 0.5},
            ],
            "loss_weight 0.5",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": [part("text", "a")], "loss_weight": 0}],
            "last assistant turn is marked not to be trained",
        ),
        (
            [
                {"role": "user", "content": [part("text", "q")], "loss_weight": 1.0},
                {"role": "assistant", "content": "a"},
            ],
            "only assistant turns are trained",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": [part("tool_call", "{not json")]}],
            "must hold the call as JSON",
        ),
        (
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": [part("tools", "[]")]}],
            "unknown part type `tools`",
        ),
    ],
)
def test_typed_content_problems_name_the_part_and_the_fix(messages, what):
    with pytest.raises(RowProblem) as err:
        convert({"tools": SEARCH, "messages": messages})
    assert what in str(err.value) and err.value.fix


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<>"), min_size=1, max_size=12
)


@settings(max_examples=60, deadline=None)
@given(
    reasoning=st.lists(_text, max_size=3),
    text=st.lists(_text, min_size=1, max_size=3),
    queries=st.lists(_text, min_size=1, max_size=3),
    results=st.lists(_text, min_size=3, max_size=3),
    answer=_text.filter(str.strip),
)
def test_no_text_call_or_result_of_a_typed_conversation_is_lost(reasoning, text, queries, results, answer):
    parts = [part("reasoning", r) for r in reasoning] + [part("text", t) for t in text] + [call(q) for q in queries]
    listed = json.dumps(results[: len(queries)])
    row = convert(
        {
            "tools": SEARCH,
            "messages": [
                {"role": "user", "content": [part("text", "go")]},
                {"role": "assistant", "content": parts},
                {"role": "tool", "content": [part("text", listed)]},
                {"role": "assistant", "content": [part("text", answer)]},
            ],
        }
    )
    turn = row["messages"][1]
    assert turn["content"] == "".join(text)
    assert turn.get("reasoning_content", "") == "".join(reasoning)
    assert [c["function"]["arguments"]["q"] for c in turn["tool_calls"]] == queries
    tools = [m["content"] for m in row["messages"] if m["role"] == "tool"]
    assert tools == (results[: len(queries)] if len(queries) > 1 else [listed])
    assert row["messages"][-1]["content"] == answer
