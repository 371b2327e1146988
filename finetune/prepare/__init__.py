"""Prepare a user's data once for every framework: read, convert to canonical conversations, validate, write.

readers    files, folders, hub datasets -> rows with their `file:line`
formats    layout and kind detection, conversion to the canonical conversation
validate   the rules a canonical row must follow
writers    canonical -> LLaMA-Factory and SWIFT rows, and the files they go to
stats      content and token statistics
manifest   the manifest and the content hash that makes a re-run a no-op
pipeline   one `prepare` run, streaming from inputs to the dataset folder
"""
