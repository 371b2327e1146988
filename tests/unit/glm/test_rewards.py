"""The sample GRPO rewards on hand-written completions: what earns the answer reward, what the format reward
refuses. Both are pure functions of the text, so no trainer is needed."""

from __future__ import annotations

import pytest

from finetune.glm.rewards import answer_reward, format_reward

TOOL_CALL = "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"
TOOL_CALL_47 = "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>"  # GLM-4.7


@pytest.mark.parametrize(
    ("completion", "solution"),
    [
        ("<think>4 boxes of 4.</think>The answer is 16.", "16"),  # a number in a sentence
        ("<think>Half.</think>\\boxed{\\frac{1}{2}}", "0.5"),  # a LaTeX fraction against a decimal
        ("<think>Half.</think>It is 1/2.", "0.5"),  # a plain fraction
        ("I first tried 3, then found \\boxed{7}.", "7"),  # the boxed answer, not the first number
        ("<think>Sum.</think>Answer: 1,000", "1000"),  # thousands separator
        ("<think>Sub.</think>x = -3", "-3"),
        ("<think>Sure.</think>Answer: yes", "yes"),  # text answers compare as words
        ("yes", "yes"),
        ("<think>Capital.</think>\\boxed{Paris}", "paris"),
    ],
)
def test_a_correct_final_answer_earns_the_reward(completion, solution):
    assert answer_reward(completion, solution) == 1.0


@pytest.mark.parametrize(
    ("completion", "solution"),
    [
        ("<think>The answer is 5.</think>It is 6.", "5"),  # the reasoning is not the answer
        ("<think>The answer is 16, surely", "16"),  # cut off while thinking: no answer given
        ("<think>Half.</think>1/2", "2"),
        ("<think>Hmm.</think>Answer: no", "yes"),
        ("<think>Hmm.</think>", "16"),  # nothing after the reasoning
        ("<think>Capital.</think>Lyon", "Paris"),
    ],
)
def test_a_wrong_or_missing_answer_earns_nothing(completion, solution):
    assert answer_reward(completion, solution) == 0.0


@pytest.mark.parametrize(
    "completion",
    [
        "<think>Short.</think>The answer is 16.",
        "No reasoning, just 16.",
        f"<think>Need the weather.</think>{TOOL_CALL}",
        f"<think></think>Checking.\n{TOOL_CALL}",
        f"<think>Need the weather.</think>Checking.{TOOL_CALL_47}<tool_call>now</tool_call>",  # no-argument call
    ],
)
def test_well_formed_output_earns_the_format_reward(completion):
    assert format_reward(completion) == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "<think>Never closed. The answer is 16.",  # unbalanced think block
        "<think>a</think><think>b</think>16",  # two think blocks
        "Answer first.<think>then thinking</think>",  # think block not leading
        "<think>All reasoning.</think>   ",  # nothing visible after the reasoning
        # a tool call without a name
        "<think>Call.</think><tool_call>\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>",
        "<think>Call.</think><tool_call>get_weather\ncity=Paris\n</tool_call>",  # arguments not as key/value pairs
        "<think>Call.</think><tool_call>get_weather\n<arg_key>city</arg_key>\n</tool_call>",  # unbalanced arg tags
        "<think>Call.</think><tool_call><arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",  # no name
        "<think>Call.</think><tool_call>get_weather<arg_key>city</arg_key>Paris</tool_call>",  # 4.7, no value tags
    ],
)
def test_malformed_output_earns_no_format_reward(completion):
    assert format_reward(completion) == 0.0
