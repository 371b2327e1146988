"""`finetune bench`: the recipes' training step measured on a slice of GLM-4.5 / GLM-4.5-Air, against the planner.

A full GLM-4.5 does not fit one GPU, but a slice does: the real per-layer shapes and the real vocabulary with only a
few layers (at least one dense and one MoE). Per-layer memory and time scale with the layer count, so the slice
measures what the full model costs per layer. Modules:

- `slice`: the slice's config from `recipes/models/` (or the replica's tiny shapes for CPU runs), and a saved copy
  for the frameworks' own trainers;
- `experts`: the MoE expert implementations the installed transformers offers;
- `step`: real training steps the way the recipes run them (LoRA on the recipes' targets, or full);
- `measure`: device, peak memory, synchronised step times, tokens/s and MFU;
- `compare`: the planner's prediction for the same slice and configuration;
- `records`, `report`, `fit`: JSON lines, the markdown table, and coefficients fitted back for the planner;
- `framework_step`: one real LLaMA-Factory / SWIFT step on a saved slice (GPU machines);
- `units`, `budget`, `sweep` (with `placeholders`, `sweep_report`): the whole GPU run, most valuable first, inside
  a time budget, each measurement started only when its estimate fits;
- `wheels`, `envs`: the wheels that run carries to a machine without a package index, and the per-step
  interpreters made from them.

Records always say which device produced them; a CPU run is never reported as a GPU figure.
"""
