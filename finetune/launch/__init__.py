"""A launch: the frozen plan, the run directory, the node rendezvous, torchrun, resume, checkpoints."""
