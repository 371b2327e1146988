"""`chat MODEL_OR_URL`: chat with a local model folder or an OpenAI-compatible server (finetune.serving.chat)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat with a model folder or an OpenAI-compatible server, tools included")
    p.add_argument("target", metavar="MODEL_OR_URL", help="model folder, or server address such as http://host:8000")
    p.add_argument("--tools", type=Path, help="JSON file with the tool definitions (OpenAI format)")
    p.add_argument("--no-thinking", action="store_true", help="thinking off (chat_template_kwargs.enable_thinking)")
    p.add_argument("--message", help="one-shot: send this message and print the reply as JSON")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--model", help="model name on the server (default: the first it lists)")
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--stream", action="store_true", help="print the reply as the server sends it (servers only)")
    p.set_defaults(func=cmd_chat)


def cmd_chat(args: argparse.Namespace) -> int:
    from finetune.serving.chat import connect, load_tools, repl

    tools = load_tools(args.tools) if args.tools else None
    chat = connect(args.target, args.model)
    if args.message is None:
        repl(chat, tools, thinking=not args.no_thinking, system=args.system, stream=args.stream)
        return 0
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.message}
    ]
    reply = chat.reply(messages, tools, thinking=not args.no_thinking, max_tokens=args.max_tokens, stream=args.stream)
    print(json.dumps(reply, ensure_ascii=False))
    return 0
