"""Sample GRPO rewards for the family's outputs: one for verifiable answers, one for the output format (GLM-4.5's
tool-call layout with newlines and GLM-4.7's without both count as well formed).

Pure functions of the completion text (and the row's reference `solution`), so they are tested without a
trainer (tests/unit/glm/test_rewards.py); `recipes/swift/plugins/glm45_rewards.py` registers them with ms-swift.
Answer equivalence is math-verify's (the checker behind ms-swift's own `accuracy` reward and Hugging Face's
open-r1): numbers, fractions, LaTeX and `\\boxed{}` compare by value. Write your own the same way and point a
recipe at it with `--set external_plugins=my_rewards.py --set reward_funcs=[my_reward]`.
"""

from __future__ import annotations

import re

_THINK = re.compile(r"^\s*<think>(?P<reasoning>.*?)</think>(?P<answer>.*)$", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_ANSWER_LINE = re.compile(r"(?:final answer|answer)\s*[:=]\s*(.+)", re.IGNORECASE)
_TOOL_CALL = re.compile(r"<tool_call>(?P<body>.*?)</tool_call>", re.DOTALL)
_ARG_PAIR = re.compile(r"\s*<arg_key>[^<]+</arg_key>\s*<arg_value>.*?</arg_value>", re.DOTALL)
_TAGS = ("think", "tool_call", "arg_key", "arg_value")


def visible_answer(completion: str) -> str:
    """The part after the reasoning block (the whole text when there is none; nothing when the block never
    closes: a completion cut off while thinking has given no answer, whatever numbers its reasoning holds)."""
    match = _THINK.match(completion)
    if match:
        return match["answer"].strip()
    return "" if "<think>" in completion else completion.strip()


def _final_text(answer: str) -> str:
    """The answer a text solution is compared with: `\\boxed{x}`, else an 'Answer: x' line, else all of it."""
    boxed = _BOXED.findall(answer)
    if boxed:
        return boxed[-1]
    lines = _ANSWER_LINE.findall(answer)
    return lines[-1] if lines else answer


def _words(text: str) -> str:
    return " ".join(text.strip().strip("$").rstrip(".").lower().split())


def answer_reward(completion: str, solution: str) -> float:
    """1.0 when the completion's final answer (after its reasoning) is the reference solution: equal in value
    when the solution is mathematical (math-verify parses both), the same words when it is text ("yes", "Paris")."""
    from math_verify import parse, verify

    answer = visible_answer(completion)
    if not answer:
        return 0.0
    gold = parse(solution)
    if gold:
        return 1.0 if verify(gold, parse(answer)) else 0.0
    return 1.0 if _words(_final_text(answer)) == _words(solution) else 0.0


def format_reward(completion: str) -> float:
    """1.0 for well-formed output: at most one leading think block, balanced tags, well-formed tool calls
    (`<tool_call>name`, then arg_key/arg_value pairs, with or without newlines), and something visible after the
    reasoning."""
    if any(completion.count(f"<{tag}>") != completion.count(f"</{tag}>") for tag in _TAGS):
        return 0.0
    if completion.count("<think>") > 1 or ("<think>" in completion and not _THINK.match(completion)):
        return 0.0
    answer = visible_answer(completion)
    if not answer:
        return 0.0
    for call in _TOOL_CALL.finditer(answer):
        body = call["body"]
        start = body.find("<arg_key>")
        name, args = (body[:start], body[start:]) if start >= 0 else (body, "")
        if not name.strip() or "\n" in name.strip() or "<" in name or _ARG_PAIR.sub("", args).strip():
            return 0.0
    return 1.0
