"""ms-swift (and Megatron-SWIFT), as the launcher sees it: the adapter and the TrainingSetup of its configs."""
