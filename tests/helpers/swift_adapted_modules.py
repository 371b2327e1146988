"""Inside the ms-swift environment: the modules ms-swift's own tuner set-up adapts for rendered recipe configs.

Usage: python tests/helpers/swift_adapted_modules.py {sft|rlhf} CONFIG.yaml [{sft|rlhf} CONFIG.yaml ...]
-> one JSON line: a list of trainable names per config (several configs, one ms-swift import).
"""

import contextlib
import json
import sys


def trainable_names(command: str, config_path: str) -> list[str]:
    from swift.arguments import RLHFArguments, SftArguments
    from swift.cli.main import parse_yaml_args
    from swift.pipelines.train.tuner import TunerMixin
    from swift.utils import parse_args

    flags = [config_path]
    parse_yaml_args(flags)
    args, _ = parse_args(SftArguments if command == "sft" else RLHFArguments, flags)
    model, _ = args.get_model_processor()
    model = TunerMixin.prepare_model(args, model)
    return [name for name, p in model.named_parameters() if p.requires_grad]


def main() -> None:
    pairs = list(zip(sys.argv[1::2], sys.argv[2::2], strict=True))
    with contextlib.redirect_stdout(sys.stderr):
        names = [trainable_names(command, config_path) for command, config_path in pairs]
    print(json.dumps(names))


if __name__ == "__main__":
    main()
