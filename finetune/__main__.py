"""`python -m finetune` entry point."""

from finetune.cli import main

raise SystemExit(main())
