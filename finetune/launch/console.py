"""What a running launch shows on the terminal: by default the trainers' progress lines and the lines that say a
run is stopping, with the frameworks' full output kept in `logs/node<R>.log`; with `-v` everything.

The trainers' stream is split into lines (a line may arrive in several chunks); when training fails, the tail of
the log is shown, so a quiet run never hides why it ended.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from finetune.frameworks.trainer.progress_line import format_progress

KEPT_MARKERS = (b"stop requested:", b"Traceback (most recent call last)")
TAIL_LINES = 40


class QuietConsole:
    """Feed it the trainers' output chunks; it yields what the terminal shows and remembers the log's tail."""

    def __init__(self) -> None:
        self._partial = b""
        self.tail: deque[bytes] = deque(maxlen=TAIL_LINES)

    def feed(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            lines = (self._partial + chunk).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                shown = self._shown(line)
                if shown is not None:
                    yield shown
        if self._partial:
            shown = self._shown(self._partial)
            self._partial = b""
            if shown is not None:
                yield shown

    def _shown(self, line: bytes) -> bytes | None:
        text = line.rstrip(b"\r").split(b"\r")[-1]  # a progress bar redraws itself with carriage returns
        self.tail.append(text)
        progress = format_progress(text.decode(errors="replace"))
        if progress is not None:
            return progress.encode() + b"\n"
        if any(marker in text for marker in KEPT_MARKERS):
            return text + b"\n"
        return None

    def failure_report(self, log_name: str) -> bytes:
        return f"last lines of {log_name}:\n".encode() + b"".join(b"  " + line + b"\n" for line in self.tail)
