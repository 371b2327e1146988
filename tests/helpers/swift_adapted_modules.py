"""Inside the ms-swift environment: the modules ms-swift's own tuner set-up adapts for a rendered recipe config.

Usage: python tests/helpers/swift_adapted_modules.py {sft|rlhf} CONFIG.yaml  -> JSON list of trainable names.
"""

import contextlib
import json
import sys


def main() -> None:
    command, config_path = sys.argv[1], sys.argv[2]
    with contextlib.redirect_stdout(sys.stderr):
        from swift.arguments import RLHFArguments, SftArguments
        from swift.cli.main import parse_yaml_args
        from swift.pipelines.train.tuner import TunerMixin
        from swift.utils import parse_args

        flags = [config_path]
        parse_yaml_args(flags)
        args, _ = parse_args(SftArguments if command == "sft" else RLHFArguments, flags)
        model, _ = args.get_model_processor()
        model = TunerMixin.prepare_model(args, model)
        trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    print(json.dumps(trainable))


if __name__ == "__main__":
    main()
