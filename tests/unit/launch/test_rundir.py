"""Nodes that arrive at once share the run directory's files: none may see another's file half written."""

from __future__ import annotations

import threading

from finetune.launch.rundir import claim_run_dir


def test_a_node_never_reads_a_shared_file_another_node_is_still_writing(tmp_path):
    """Node 1 polls for config.yaml while node 0 writes a large one: whenever it exists it is whole (it appears by
    a hard link of a finished file), so the nodes' comparison never fails on a partial read."""
    text = "x" * 64_000_000
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        path = tmp_path / "run" / "config.yaml"
        while not done.is_set():
            if path.exists():
                seen.append(len(path.read_text()))
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    claim_run_dir(tmp_path / "run", 0, {"config.yaml": text})
    done.set()
    watcher.join()
    assert seen == [len(text)]
    claim_run_dir(tmp_path / "run", 1, {"config.yaml": text})  # the second node finds the same config: joins
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml", "logs"]  # no temporary left
