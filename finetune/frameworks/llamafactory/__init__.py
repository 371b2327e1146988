"""LLaMA-Factory, as the launcher sees it: the adapter and the TrainingSetup of its configs."""
