"""XLSX results: what the workbook holds (read back with openpyxl), reruns of it (as written, and re-saved
as Excel would), hard stops (the journal) and Ctrl-C, all against the real sandbox on loopback."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

import openpyxl
import pytest
from faultkit import assert_exactly_once, kill, spawn_run, wait_until, write_config, write_manifest
from runkit import CAMPAIGN, run_cli

from importer import runinfo
from importer.results import IMPORT_COLUMNS, Outcome, XlsxResultsWriter, journal_path, recover_journals
from importer.sandbox import Sandbox

GREEN, AMBER, RED, GREY, YELLOW = "FFC6EFCE", "FFFFEB9C", "FFFFC7CE", "FFD9D9D9", "FFFFFF99"


def fill(cell) -> str | None:
    return cell.fill.fgColor.rgb[-6:].rjust(8, "F") if cell.fill.fill_type == "solid" else None


def to_xlsx(csv_path: Path, out: Path, edit=None) -> Path:
    """The CSV manifest as people keep it in Excel: every cell text, on a sheet named Appels."""
    with open(csv_path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    if edit:
        edit(rows)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Appels"
    for r in rows:
        ws.append(r)
    for row in ws.iter_rows():
        for cell in row:
            cell.data_type = "s"  # typed as text, as a formula-looking value pasted into a text column
    wb.save(out)
    return out


def sheet_rows(path: Path) -> tuple[list[str], list[dict[str, object]]]:
    ws = openpyxl.load_workbook(path)["Results"]
    values = list(ws.iter_rows(values_only=True))
    headers = [str(h) for h in values[0]]
    return headers, [dict(zip(headers, row, strict=True)) for row in values[1:]]


def bad_rows(rows: list[list[str]]) -> None:
    rows[2][1] = "not-an-email"  # row 3: invalid
    rows[3][5] = "=1+2"  # row 4: a formula-looking metadata cell must stay text
    rows[4][3] = "31/02/2025 10:00"  # row 5: impossible date


def run_xlsx(tmp_path: Path, sb: Sandbox, manifest: Path, results: Path, *extra: str):
    cfg = tmp_path / "reliability.yaml"
    return run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet", "--results", results, *extra)


def test_an_xlsx_manifest_gets_an_annotated_xlsx_results_workbook(tmp_path, monkeypatch):
    with Sandbox(data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        csv_manifest, _ = write_manifest(tmp_path, n=6, agents=2)
        write_config(tmp_path, workers=2)
        manifest = to_xlsx(csv_manifest, tmp_path / "calls.xlsx", bad_rows)
        r = run_cli("run", manifest, "--config", tmp_path / "reliability.yaml", "--api-url", sb.url, "--quiet")
        assert r.code == 1, r.err
        results = Path(next(line.split(": ", 1)[1] for line in r.out.splitlines() if line.startswith("results: ")))
        assert results.suffix == ".xlsx" and results.parent == tmp_path / "results"
        assert not journal_path(results).exists(), "the journal is removed once the workbook is written"
        assert runinfo.read(results).complete
        assert len(sb.calls()) == 4

    wb = openpyxl.load_workbook(results)
    assert wb.sheetnames == ["Results", "Summary"]
    ws = wb["Results"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:{openpyxl.utils.get_column_letter(6 + len(IMPORT_COLUMNS))}7"
    headers = [c.value for c in ws[1]]
    assert headers == ["file_path", "agent_email", "agent_name", "conversation_timestamp", "campaign_id", "site",
                       *IMPORT_COLUMNS]
    by_row = {ws.cell(row, 7).value: ws.cell(row, 8) for row in range(2, 8)}
    assert {k: v.value for k, v in by_row.items()} == {2: "uploaded", 3: "invalid", 4: "uploaded", 5: "invalid",
                                                       6: "uploaded", 7: "uploaded"}
    assert {k: fill(v) for k, v in by_row.items()} == {2: GREEN, 3: RED, 4: GREEN, 5: RED, 6: GREEN, 7: GREEN}
    # The cell each problem names is red, with the problem as its comment; the others are left plain.
    email = ws.cell(3, 2)
    assert email.value == "not-an-email" and fill(email) == RED
    assert "not a valid email address" in email.comment.text
    stamp = ws.cell(5, 4)
    assert fill(stamp) == RED and "not a valid date/time" in stamp.comment.text
    assert ws.cell(2, 2).comment is None and fill(ws.cell(2, 2)) is None
    # A formula-looking original cell is still the text typed, never a formula.
    assert ws.cell(4, 6).value == "=1+2" and ws.cell(4, 6).data_type == "s"
    assert ws.cell(2, 7).value == 2 and ws.cell(2, 9).value == 200  # counters are numbers
    summary = dict(wb["Summary"].iter_rows(values_only=True))
    assert summary["rows"] == "6" and summary["uploaded"] == "4" and summary["invalid"] == "2"
    assert summary["API"].rstrip("/") == sb.url.rstrip("/")
    assert summary["config"].endswith("reliability.yaml")
    assert "fix what import_error says" in summary["next"] and str(results) in summary["next"]
    assert summary["elapsed"].endswith(" s")


@pytest.mark.parametrize("resave", [False, True], ids=["as-written", "re-saved-by-openpyxl"])
def test_an_xlsx_results_file_reruns_like_a_results_csv(tmp_path, monkeypatch, resave):
    with Sandbox(data_dir=tmp_path / "server") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        manifest, rows = write_manifest(tmp_path, n=8, agents=2)
        write_config(tmp_path, workers=2)
        first = tmp_path / "first.xlsx"
        sb.inject("/calls/audio", 422, 422)  # two rows refused: what a rerun must resend
        r = run_xlsx(tmp_path, sb, manifest, first)
        assert r.code == 1, r.err
        _, lines = sheet_rows(first)
        assert sorted(str(x["import_status"]) for x in lines).count("failed") == 2
        if resave:  # Excel rewrites the whole file when a person saves it
            wb = openpyxl.load_workbook(first)
            wb["Results"]["F2"] = "Lyon (checked)"
            wb.save(first)
            runinfo.write(first, runinfo.read(first))
        second = tmp_path / "second.xlsx"
        r = run_xlsx(tmp_path, sb, first, second)
        assert r.code == 0, r.out + r.err
        _, again = sheet_rows(second)
        assert [str(x["import_status"]) for x in again].count("already_uploaded") == 6
        assert [str(x["import_status"]) for x in again].count("uploaded") == 2
        by_status = assert_exactly_once([{k: str(v) for k, v in x.items()} for x in again], rows, sb.calls())
        assert len(by_status["uploaded"]) == 2 and len(sb.calls()) == 8
        # A third run of the new file sends nothing at all.
        r = run_xlsx(tmp_path, sb, second, tmp_path / "third.xlsx")
        assert r.code == 0 and len(sb.calls()) == 8


def test_a_hard_stop_leaves_a_journal_that_the_next_run_turns_into_its_workbook(tmp_path, monkeypatch):
    with Sandbox(latency_ms=80, data_dir=tmp_path / "server") as sb:
        manifest, rows = write_manifest(tmp_path, n=20, agents=2)
        cfg = write_config(tmp_path, workers=2)
        results = tmp_path / "results" / "killed.xlsx"
        child = spawn_run(manifest, cfg, sb.url, sb.api_key, results)
        assert wait_until(lambda: len(sb.calls()) >= 5, 30), "the child never uploaded"
        kill(child)
        journal = journal_path(results)
        assert journal.exists() and not results.exists()
        finished = sum(1 for _ in csv.reader(journal.open(encoding="utf-8-sig"))) - 1
        assert finished >= 1

        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        r = run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet", "--results",
                    tmp_path / "results" / "again.xlsx")
        assert r.code in (0, 1), r.err  # 1: rows in flight at the kill are unknown (the server may have them)
        assert f"recovered {results}" in r.err
        assert results.exists() and not journal.exists()
        _, again = sheet_rows(tmp_path / "results" / "again.xlsx")
        assert_exactly_once([{k: str(v) for k, v in x.items()} for x in again], rows, sb.calls())

    wb = openpyxl.load_workbook(results)
    recovered = list(wb["Results"].iter_rows(min_row=2, values_only=True))
    assert len(recovered) in (finished, finished - 1)  # a torn last line is left out
    assert "stopped abruptly" in dict(wb["Summary"].iter_rows(values_only=True))["incomplete"]
    # The recovered workbook is incomplete: refused as a manifest, like a results CSV cut short.
    r = run_cli("validate", results, "--config", cfg)
    assert r.code == 2 and "is incomplete" in r.err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_writes_the_workbook_with_the_rows_left_grey(tmp_path, sig, code):
    with Sandbox(latency_ms=150, data_dir=tmp_path / "server") as sb:
        manifest, rows = write_manifest(tmp_path, n=30, agents=2)
        cfg = write_config(tmp_path, workers=2)
        results = tmp_path / "stopped.xlsx"
        child = spawn_run(manifest, cfg, sb.url, sb.api_key, results)
        assert wait_until(lambda: len(sb.calls()) >= 2, 30)
        child.send_signal(sig)
        assert child.wait(30) == code
    assert results.exists() and not journal_path(results).exists()
    ws = openpyxl.load_workbook(results)["Results"]
    statuses = {ws.cell(r, 8).value: fill(ws.cell(r, 8)) for r in range(2, 32)}
    assert statuses.get("not_attempted") == GREY and statuses.get("uploaded") == GREEN
    assert ws.max_row == 31


def test_results_extensions_other_than_csv_and_xlsx_are_refused(tmp_path):
    manifest, _ = write_manifest(tmp_path, n=2)
    cfg = write_config(tmp_path)
    r = run_cli("run", manifest, "--config", cfg, "--sandbox", "--quiet", "--results", tmp_path / "out.txt")
    assert r.code == 2 and f"--results {tmp_path / 'out.txt'}: results are written as .csv or .xlsx files" in r.err
    assert not (tmp_path / "out.txt").exists()


def test_a_csv_manifest_with_xlsx_results_and_back(tmp_path):
    manifest, _ = write_manifest(tmp_path, n=3)
    cfg = write_config(tmp_path)
    r = run_cli("run", manifest, "--config", cfg, "--sandbox", "--quiet", "--results", tmp_path / "r.xlsx")
    assert r.code == 0, r.err
    _, lines = sheet_rows(tmp_path / "r.xlsx")
    assert [x["import_status"] for x in lines] == ["uploaded"] * 3
    assert lines[0]["campaign_id"] == CAMPAIGN


def test_the_journal_recovery_leaves_out_a_torn_last_line_and_a_live_journal(tmp_path):
    results = tmp_path / "r.xlsx"
    rows = iter([["a.wav", "x"], ["b.wav", "y"], ["c.wav", "z"]])
    writer = XlsxResultsWriter(results, ("file_path", "note"), rows, [2, 3, 4])
    writer.add(0, Outcome("uploaded", 200, attempts=1, call_id="c1", finished_at="t"))
    writer.add(1, Outcome("failed", 422, "bad", 1, finished_at="t"))
    # While the writer is alive its journal is locked: another run's recovery leaves it alone.
    assert recover_journals(tmp_path) == [] and journal_path(results).exists()
    writer._journal.close()
    writer._lock.close()  # the process "dies": no workbook, the lock released by the OS
    with open(journal_path(results), "a", encoding="utf-8") as fh:
        fh.write("c.wav,z,4,upl")  # a line cut off mid-write
    assert recover_journals(tmp_path) == [(results, 2)]
    values = list(openpyxl.load_workbook(results)["Results"].iter_rows(min_row=2, values_only=True))
    assert [v[3] for v in values] == ["uploaded", "failed"]
