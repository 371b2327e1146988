"""check-format's one-line verdict: trained tokens identical, or how many rows differ in them."""

from __future__ import annotations

from finetune.glm.format_check import Difference, FormatReport


def test_the_verdict_counts_rows_that_differ_in_trained_tokens_only():
    report = FormatReport("r", "ms-swift", "glm4_5", rows=7)
    assert report.verdict() == "verdict: trained tokens identical in 7 rows"
    report.differences = [Difference("tools", "text", "-a\n+b")]
    assert report.verdict() == "verdict: trained tokens identical in 7 rows (1 difference(s) in untrained text only)"
    assert not report.trained_mismatch
    report.differences += [Difference("tools", "trained", "..."), Difference("think", "prompt", "...")]
    assert report.verdict() == "verdict: 2 of 7 rows differ in trained tokens" and report.trained_mismatch
    assert report.summary().splitlines()[0] == report.verdict()
