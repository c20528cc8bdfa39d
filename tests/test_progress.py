"""Long steps report progress in a log (not a terminal): counts, totals and rates, then a last line."""

from __future__ import annotations

from toolkit.progress import progress


def test_lines_with_counts_and_rates_when_stderr_is_not_a_terminal(capsys):
    assert list(progress(range(3), "tokenising train", total=3, unit="texts", every=0.0)) == [0, 1, 2]
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("tokenising train: 1/3 texts (33%), ") and "texts/s" in lines[0]
    assert lines[-1].startswith("tokenising train: 3/3 texts (100%)") and lines[-1].endswith("(done)")


def test_quick_steps_stay_quiet(capsys):
    assert sum(progress(range(100), "quick", total=100)) == 4950
    assert capsys.readouterr().err == ""
