"""Rules every canonical row must follow before a framework sees it.

Frameworks either crash on these problems an hour into a run or, worse, skip or mangle the row silently
(LLaMA-Factory drops a conversation whose roles do not alternate with only a log line). Checked here:
roles in a legal order, an assistant turn to learn from, tool calls that name a declared tool with JSON-object
arguments and are each answered (an SFT conversation may end in the assistant's calls: that turn, calls and
`<|observation|>`, is what an agent dataset teaches), no empty turns, and (for preference data) two different
answers to one prompt.
Think tags and argument JSON are checked while converting (see layouts/).
"""

from __future__ import annotations

from typing import Any

from finetune.errors import suggest
from finetune.prepare.layouts.text import THINK_CLOSE, THINK_OPEN
from finetune.prepare.layouts.tools import tool_names
from finetune.prepare.problems import RowProblem


def validate_row(row: dict[str, Any], kind: str) -> None:
    messages = row["messages"]
    declared = tool_names(row["tools"])
    if kind == "sft":
        _check_conversation(messages, declared, final="assistant")
    elif kind == "rl":
        _check_conversation(messages, declared, final="prompt")
    else:
        _check_conversation(messages, declared, final="prompt")
        for key in ("chosen", "rejected"):
            _check_assistant(row[key], key, declared)
        if _visible(row["chosen"]) == _visible(row["rejected"]):
            raise RowProblem(
                "rejected",
                "chosen and rejected are the same answer",
                "Give a worse answer as `rejected`, or drop the pair.",
            )


def _visible(msg: dict[str, Any]) -> tuple:
    return (msg.get("content", "").strip(), (msg.get("reasoning_content") or "").strip(), repr(msg.get("tool_calls")))


def _check_conversation(messages: list[dict[str, Any]], declared: list[str], *, final: str) -> None:
    """Walk the conversation as a small state machine: system? (user assistant [tool...])* ..."""
    if not messages:
        raise RowProblem("messages", "the conversation is empty", "Give at least a user message.")
    expect = "start"
    pending = 0  # tool calls not answered yet
    calls: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg["role"]
        if role == "system":
            if i != 0:
                raise RowProblem(
                    f"{where}.role",
                    "a system message after the start of the conversation",
                    "Only the first message may be a system message; merge it into that one.",
                )
            _not_empty(msg, where)
            expect = "user"
            continue
        if role == "user":
            if pending:
                raise _unanswered(i - 1, pending, where)
            if expect not in ("start", "user", "user_or_end"):
                detail = {
                    "assistant": "two user messages in a row",
                    "assistant_after_tool": "the assistant must answer the tool results first",
                }[expect]
                raise _order(where, "user", detail)
            _not_empty(msg, where)
            expect = "assistant"
        elif role == "assistant":
            if pending:
                raise _unanswered(i - 1, pending, where)
            if expect not in ("assistant", "assistant_after_tool"):
                raise _order(
                    where,
                    "assistant",
                    "the conversation must start with a user message"
                    if expect in ("start", "user")
                    else "two assistant messages in a row",
                )
            _check_assistant(msg, where, declared)
            calls = msg.get("tool_calls") or []
            pending = len(calls)
            expect = "tool" if pending else "user_or_end"
        elif role == "tool":
            if not pending:
                raise RowProblem(
                    f"{where}.role",
                    "a tool result that answers no tool call",
                    "Tool results must follow the assistant message whose tool_calls they answer, one per call.",
                )
            answered = calls[len(calls) - pending]
            call_id = answered.get("id")
            if msg.get("tool_call_id") is not None and call_id is not None:
                ids = [c.get("id") for c in calls]
                if msg["tool_call_id"] not in ids:
                    raise RowProblem(
                        f"{where}.tool_call_id",
                        f"`{msg['tool_call_id']}` matches no call of the "
                        f"assistant message before it (ids: {', '.join(map(str, ids))})",
                        "Use the id of the call this result answers.",
                    )
            pending -= 1
            expect = "tool" if pending else "assistant_after_tool"
    ends_in_call = final == "assistant" and messages[-1]["role"] == "assistant" and pending == len(calls)
    if pending and not ends_in_call:  # an agent trajectory may end in the call it teaches; nothing else may
        raise _unanswered(len(messages) - 1 - _trailing_tools(messages), pending, "messages")
    last = messages[-1]["role"]
    if final == "assistant":
        if expect == "assistant_after_tool":
            raise RowProblem(
                "messages",
                "the conversation ends with tool results, not with the assistant's answer",
                "Add the assistant message that uses the results.",
            )
        if last == "assistant" and messages[-1].get("trained") is False:
            raise RowProblem(
                "messages[-1].loss_weight",
                "the last assistant turn is marked not to be trained (loss_weight 0 / loss false)",
                "Train the last turn (weight 1), or end the conversation at the last turn to learn from.",
            )
        if last != "assistant":
            raise RowProblem(
                "messages",
                f"no assistant turn to learn from: the conversation ends with a {last} message",
                "End every conversation with the assistant's answer (for prompts without "
                "answers, prepare an RL dataset: `--kind rl`).",
            )
    elif last not in ("user", "tool"):
        raise RowProblem(
            "messages",
            f"a prompt must end with the user's turn (or tool results), not with a {last} message",
            "Move the reference answer to its own field (e.g. `solution`), or put the answers in chosen/rejected.",
        )


def _trailing_tools(messages: list[dict[str, Any]]) -> int:
    n = 0
    while n < len(messages) and messages[-1 - n]["role"] == "tool":
        n += 1
    return n


def _unanswered(index: int, pending: int, where: str) -> RowProblem:
    return RowProblem(
        f"messages[{index}].tool_calls" if where != "messages" else "messages",
        f"{pending} tool call(s) never answered: each call needs a tool result right after the assistant message",
        "Add one `tool` message per call (in call order), or remove the unanswered calls.",
    )


def _order(where: str, role: str, detail: str) -> RowProblem:
    return RowProblem(
        f"{where}.role",
        f"a {role} message out of order" + (f" ({detail})" if detail else ""),
        "Conversations go: optional system, then user and assistant in turn; tool results follow the "
        "assistant message that called the tools. Merge consecutive messages of one role.",
    )


def _not_empty(msg: dict[str, Any], where: str) -> None:
    if not msg["content"].strip():
        raise RowProblem(
            f"{where}.content",
            f"an empty {msg['role']} message",
            "Write the message, or remove the turn (and its answer).",
        )


def _check_assistant(msg: dict[str, Any], where: str, declared: list[str]) -> None:
    if msg.get("role") != "assistant":
        raise RowProblem(f"{where}.role", f"expected an assistant message, got {msg.get('role')}", "Fix the role.")
    content = msg.get("content", "")
    reasoning = msg.get("reasoning_content")
    calls = msg.get("tool_calls") or []
    for field, text in (("content", content), ("reasoning_content", reasoning or "")):
        if THINK_OPEN in text or THINK_CLOSE in text:
            raise RowProblem(
                f"{where}.{field}",
                "a stray think tag (unbalanced think tags)",
                "Write one <think>...</think> block at the start of the message, or use "
                "`reasoning_content` without tags.",
            )
    if not content.strip() and not calls:
        what = "reasoning but no answer" if reasoning and reasoning.strip() else "no content"
        raise RowProblem(
            f"{where}.content",
            f"an empty assistant turn ({what})",
            "Write the answer; every assistant turn must say or call something.",
        )
    for j, call in enumerate(calls):
        name = call["function"]["name"]
        if name not in declared:
            hint = suggest(name, declared)
            declared_text = f"declared: {', '.join(declared)}" if declared else "the row declares no tools"
            raise RowProblem(
                f"{where}.tool_calls[{j}].function.name",
                f"calls `{name}`, which is not a declared tool ({declared_text}).{hint}",
                "Declare every tool the conversation calls in the row's `tools`, or correct the name.",
            )
