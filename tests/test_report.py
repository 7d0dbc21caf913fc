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


def test_sixteen_failed_agents_list_ten_and_say_how_many_more():
    s = summary(agent_failed=16)
    s.agents_needed = 16
    s.agents_failed = {f"a{i}@x.fr": f"inviting agent a{i}@x.fr failed (HTTP 422: bad)" for i in range(16)}
    lines = summary_lines(s, RERUN)
    assert "agents: 0 invited, 0 already known, 16 failed" in lines
    assert sum(1 for line in lines if line.startswith("  inviting agent")) == 10
    assert "  ... and 6 more (each row's import_error names its agent)" in lines


def test_counts_are_written_as_people_write_them():
    assert summary_lines(summary(uploaded=1), RERUN)[1] == "1 row in 1m15s:"
    assert fmt_bytes(48_000) == "48 kB"


def test_after_a_stop_the_bar_shows_what_was_done_not_100_percent(tmp_path):
    """Rows left when a stop is requested are written not_attempted without advancing the bar."""
    from conftest import make_wav

    from importer.config import Config
    from importer.manifest import load_manifest, validate_manifest
    from importer.runner import StopSignal, run_import

    rows = ["file_path,agent_email,conversation_timestamp,campaign_id"]
    for i in range(5):
        make_wav(tmp_path / f"c{i}.wav", seconds=0.3, seed=i)
        rows.append(f"c{i}.wav,a@x.fr,{1_750_000_000 + i},665dc5c57275b74ce35c03ab")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    cfg = Config()
    vm = validate_manifest(load_manifest(tmp_path / "m.csv", cfg), cfg)

    class Recorder:
        def __init__(self) -> None:
            self.done = 0

        def start(self, phase: str, total: int) -> None:
            pass

        def advance(self, phase: str, n: int = 1, nbytes: int = 0) -> None:
            self.done += n

        def finish(self, phase: str) -> None:
            pass

    stop = StopSignal()
    stop.request(2)  # Ctrl-C before anything was sent
    progress = Recorder()
    summary_ = run_import(vm, cfg, api_url="http://127.0.0.1:9", api_key="k", state_dir=tmp_path / "s",
                          results_path=tmp_path / "r.csv", retry_unknown=False, stop=stop, progress=progress)
    assert summary_.counts["not_attempted"] == 5 and summary_.exit_code == 130
    assert progress.done == 0
