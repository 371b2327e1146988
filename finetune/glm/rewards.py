"""Sample GRPO rewards for GLM-4.5 outputs: one for verifiable answers, one for the output format.

Pure functions of the completion text (and the row's reference `solution`), so they are tested without a
trainer; `recipes/swift/plugins/glm45_rewards.py` registers them with ms-swift. Write your own the same way
and point a recipe at it with `--set external_plugins=my_rewards.py --set reward_funcs=[my_reward]`.
"""

from __future__ import annotations

import re

_THINK = re.compile(r"^\s*<think>(?P<reasoning>.*?)</think>(?P<answer>.*)$", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*[:=]\s*(.+)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")
_TOOL_CALL = re.compile(r"<tool_call>(?P<body>.*?)</tool_call>", re.DOTALL)
_ARG_PAIR = re.compile(r"\s*<arg_key>[^<]+</arg_key>\s*<arg_value>.*?</arg_value>", re.DOTALL)
_TAGS = ("think", "tool_call", "arg_key", "arg_value")


def visible_answer(completion: str) -> str:
    """The part after the reasoning block (the whole text when there is none)."""
    match = _THINK.match(completion)
    return (match["answer"] if match else completion).strip()


def extract_final_answer(text: str) -> str | None:
    """`\\boxed{x}`, else an 'Answer: x' line, else the last number; None when there is nothing to compare."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    lines = _ANSWER_LINE.findall(text)
    if lines:
        return lines[-1].strip().rstrip(".")
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _normalise(answer: str) -> str:
    answer = answer.strip().strip("$").rstrip(".").replace(",", "").lower()
    try:
        return repr(float(answer))
    except ValueError:
        return " ".join(answer.split())


def answer_reward(completion: str, solution: str) -> float:
    """1.0 when the completion's final answer equals the reference solution's, else 0.0."""
    got = extract_final_answer(visible_answer(completion))
    want = extract_final_answer(solution) or solution
    return 1.0 if got is not None and _normalise(got) == _normalise(want) else 0.0


def format_reward(completion: str) -> float:
    """1.0 for well-formed GLM-4.5 output: at most one leading think block, balanced tags, well-formed tool
    calls (`<tool_call>name` then arg_key/arg_value pairs), and something visible after the reasoning."""
    if any(completion.count(f"<{tag}>") != completion.count(f"</{tag}>") for tag in _TAGS):
        return 0.0
    if completion.count("<think>") > 1 or ("<think>" in completion and not _THINK.match(completion)):
        return 0.0
    answer = visible_answer(completion)
    if not answer:
        return 0.0
    for call in _TOOL_CALL.finditer(answer):
        name, _, args = call["body"].partition("\n")
        if not name.strip() or _ARG_PAIR.sub("", args).strip():
            return 0.0
    return 1.0
