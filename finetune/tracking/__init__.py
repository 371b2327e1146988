"""Run tracking in wandb: one run per job, named and grouped, with the launch manifest that reproduces it.

settings.py   which project, entity, group, tags, name and mode (flags > environment > user config file)
identity.py   the wandb run id and name a run directory keeps across nodes, restarts and resumes
decide.py     what tracking changes in a launch (config keys, WANDB_* environment), decided before it starts
start.py      at launch: claim the run directory's wandb run, the trainers' environment (a new decision)
manifest.py   recipe, config, dataset, commit, package versions, cluster shape: written beside the run
redaction.py  the one gate that keeps secrets out of every file a launch writes
callback.py   inside the trainers: manifest into the wandb config, memory of every rank, tokens per second
sync.py       `finetune sync RUN_DIR`: upload offline runs later; offline_reader.py reads them back

Kept free of heavy imports: the callback module is imported inside the framework environments.
"""

MANIFEST_ENV = "FINETUNE_MANIFEST"  # where the trainers find the launch manifest
