"""A test module's launches through each framework's parser before its tests run, one framework process for all of
them (as `finetune validate --all` does for the catalog): the launches then read the cached verdicts instead of
importing the framework once each. A launch whose config differs from what was checked here checks itself."""

from __future__ import annotations

import pytest


def precheck(launches: list[list[str]], env: dict[str, str] | None = None) -> None:
    """`launches`: the arguments after `finetune launch`, as the tests pass them; `env`: what the tests add."""
    from finetune.cli import build_parser
    from finetune.cli.common import launch_request
    from finetune.launch.plan import check_together

    parser = build_parser()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        check_together([launch_request(parser.parse_args(["launch", *argv])) for argv in launches])
