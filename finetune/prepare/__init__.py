"""Prepare a user's data once for every framework: read, convert to canonical conversations, validate, write.

pipeline     one `prepare` run: staging folder, no-op re-runs, never overwriting another dataset
options      what a run is asked to do (plain values: the CLI resolves recipes)
run          one pass over the inputs: convert, validate, deduplicate, split, write or reject each row
readers/     files, folders, hub datasets -> rows with their `file:line` (one module a container)
layouts/     layout and kind detection, conversion to the canonical conversation (one module a layout)
validate     the rules a canonical row must follow; consistency: the rules across rows
writers      canonical -> LLaMA-Factory and SWIFT rows, and the files they go to
stats        content statistics; tokens: token lengths against a recipe's sequence length
manifest     the typed manifest.json, read back through `read_manifest` / `PreparedDataset.manifest`
fingerprint  the content hash that makes a re-run a no-op
datasets     prepared datasets found by name
"""
