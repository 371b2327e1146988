"""Runs inside the serving engine's environment: `python -m finetune.serving.engine_args < REQUEST`, where REQUEST is
{"engine": "vllm" | "sglang", "commands": [[ARG, ...], ...]} (several commands, one slow engine import).

Parses the arguments with the engine's own server argument parser (vLLM's `make_arg_parser` and its
`validate_parsed_serve_args`, SGLang's `ServerArgs.add_cli_args`), and for vLLM looks the tool-call and reasoning
parsers up in its own registries (argparse takes any name), so that `finetune serve` emits only what the installed
engine accepts. Prints one JSON line, a list with one verdict per command: {"ok": true} or {"ok": false, "error":
"<the engine's own message>"}.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys


def _vllm_parser() -> argparse.ArgumentParser:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))


def _sglang_parser() -> argparse.ArgumentParser:
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    return parser


def _vllm_validate(parsed: argparse.Namespace) -> None:
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.reasoning.abs_reasoning_parsers import ReasoningParserManager
    from vllm.tool_parsers.abstract_tool_parser import ToolParserManager

    validate_parsed_serve_args(parsed)
    if parsed.tool_parser_plugin:
        ToolParserManager.import_tool_parser(parsed.tool_parser_plugin)  # as the server does before it looks up
    for flag, name, manager in (
        ("--tool-call-parser", parsed.tool_call_parser, ToolParserManager),
        ("--reasoning-parser", getattr(parsed, "reasoning_parser", None), ReasoningParserManager),
    ):
        if name and name not in manager.list_registered():
            known = ", ".join(sorted(manager.list_registered()))
            raise ValueError(f"{flag} {name}: not a parser this vLLM has (it has: {known})")


def check(engine: str, args: list[str]) -> dict:
    parser = {"vllm": _vllm_parser, "sglang": _sglang_parser}[engine]()
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parsed = parser.parse_args(args)
    except SystemExit as exit_:
        if exit_.code:
            lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
            return {"ok": False, "error": lines[-1] if lines else f"exit {exit_.code}"}
        return {"ok": True}
    if engine == "vllm":
        try:
            _vllm_validate(parsed)
        except (TypeError, ValueError) as error:
            return {"ok": False, "error": str(error)}
    return {"ok": True}


def main() -> None:
    request = json.load(sys.stdin)
    with contextlib.redirect_stdout(io.StringIO()):  # the engine's import-time chatter
        verdicts = [check(request["engine"], args) for args in request["commands"]]
    print(json.dumps(verdicts))


if __name__ == "__main__":
    main()
