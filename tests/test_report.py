"""The wording people read at the end of a run (pure functions, no run needed)."""

from __future__ import annotations

from pathlib import Path

from importer.report import fmt_bytes, fmt_duration, next_steps, summary_dict, summary_lines
from importer.runner import RunSummary

RERUN = "allobrain-import run results/calls-1.csv"


def summary(**counts: int) -> RunSummary:
    return RunSummary(Path("results/calls-1.csv"), dict(counts), sum(counts.values()), elapsed=75, upload_seconds=10,
                      uploaded_bytes=5_000_000)


def test_next_steps_say_what_to_run():
    assert next_steps(summary(uploaded=3), RERUN) == ["nothing left to do: every row is uploaded."]
    [line] = next_steps(summary(uploaded=1, failed=2), RERUN)
    assert line.endswith(RERUN) and "import_error" in line
    lines = next_steps(summary(uploaded=1, unknown=2, invalid=1), RERUN)
    assert len(lines) == 2 and lines[1].endswith(RERUN + " --retry-unknown")


def test_summary_lines_count_every_status_and_the_throughput():
    s = summary(uploaded=20, failed=1)
    s.auth_error = "HTTP 401: Invalid or missing API key"
    lines = summary_lines(s, RERUN)
    assert lines[1].startswith("STOPPED: the API refused the key")
    assert "21 rows in 1m15s:" in lines
    assert "  uploaded          20" in lines and "  failed            1" in lines
    assert "throughput: 2.0 calls/s, 0.50 MB/s" in lines
    assert summary_dict(s)["exit_code"] == 3


def test_formats():
    assert fmt_duration(3.21) == "3.2s" and fmt_duration(3725) == "1h02m05s"
    assert fmt_bytes(1_500_000) == "1.5 MB" and fmt_bytes(2_500_000_000) == "2.50 GB"


def test_progress_without_a_terminal_is_a_plain_line_now_and_then(capsys):
    from importer.progress import TqdmProgress

    p = TqdmProgress(interval=0.0)
    assert p.plain  # pytest's captured stderr is not a terminal
    p.start("uploads", 4)
    p.advance("uploads", nbytes=2_000_000)
    p.close()
    err = capsys.readouterr().err
    assert err.startswith("uploading calls: 1/4 (25%), ") and "ETA" in err
    quiet = TqdmProgress(disable=True, interval=0.0)
    quiet.start("uploads", 4)
    quiet.advance("uploads")
    assert capsys.readouterr().err == ""
