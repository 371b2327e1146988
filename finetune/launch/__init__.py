"""A launch: the frozen plan, the run directory, the node rendezvous, torchrun, resume, checkpoints.

plan.py         LaunchRequest -> LaunchPlan: everything decided, nothing written (frozen)
resolve.py      the model, prepared dataset and DeepSpeed JSON a request names, checked; nvme.py: `--nvme-path`
check.py        the rendered config through the framework's own argument parser
dry_run.py      `--dry-run`: the plan printed as comments, exports and the command
execute.py      claim the run directory and the wandb run (a new plan), meet the nodes, run torchrun, watch
record.py       the launch record of each node (`launch-node<R>.json`), built once per launch
topology.py     nodes, ranks and torchrun's options; rendezvous.py: the launchers meet before training
rundir.py       run directory names and the files every node shares; resume.py and checkpoints.py: `--resume`
run_state.py    the run's state (running / stopped / finished / failed) and the trainers' stop marker;
                status.py: `finetune status RUN_DIR`
doctor.py       `finetune doctor`: is this machine ready; demo.py: `finetune demo` end to end on a CPU
"""
