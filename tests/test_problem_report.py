"""`validate --report PATH.xlsx`: the annotated copy of the manifest, read back with openpyxl."""

from __future__ import annotations

import csv
from pathlib import Path

import openpyxl
from runkit import CAMPAIGN, run_cli, write_config, write_manifest

from importer.config import load_config
from importer.manifest import load_manifest, validate_manifest
from importer.results import write_problem_report

RED, YELLOW = "FFC7CE", "FFFF99"


def fill(cell) -> str | None:
    return cell.fill.fgColor.rgb[-6:] if cell.fill.fill_type == "solid" else None


def problem_manifest(tmp_path: Path) -> Path:
    """Rows 2-5 with a blank line as row 4 (so numbering must follow the spreadsheet's), an error on row 3,
    a warning (another name for the same agent) on row 5, both on row 6."""
    path = write_manifest(tmp_path, n=2, seconds=2.5)
    rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
    rows[2][1] = "not-an-email"
    rows.append([])
    rows.append(["audio/call0000.wav", "agent0@example.com", "Someone Else", "1750009000", CAMPAIGN, "Lyon"])
    rows.append(["audio/nope.wav", "agent0@example.com", "Third Name", "1750009600", CAMPAIGN, "Lyon"])
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)
    return path


def test_the_report_marks_each_problem_cell_and_links_it_from_the_problems_sheet(tmp_path):
    manifest = problem_manifest(tmp_path)
    cfg = write_config(tmp_path)
    report = tmp_path / "out" / "report.xlsx"
    r = run_cli("validate", manifest, "--config", cfg, "--report", report)
    assert r.code == 1
    assert f"report: {report}" in r.out and "errors in red" in r.out
    wb = openpyxl.load_workbook(report)
    assert wb.sheetnames == ["Manifest", "Problems"]
    ws = wb["Manifest"]
    assert ws.freeze_panes == "A2" and ws.auto_filter.ref == "A1:G6"
    assert [c.value for c in ws[1]] == ["file_path", "agent_email", "agent_name", "conversation_timestamp",
                                        "campaign_id", "site", "import_problems"]
    # Row numbers are the spreadsheet's: row 4 was blank and stays blank.
    assert all(c.value is None for c in ws[4])
    assert ws.cell(5, 3).value == "Someone Else"
    email = ws.cell(3, 2)
    assert email.value == "not-an-email" and fill(email) == RED
    assert "not a valid email address" in email.comment.text
    name = ws.cell(5, 3)
    assert fill(name) == YELLOW and name.comment.text.startswith("warning: agent agent0@example.com is already named")
    assert fill(ws.cell(6, 1)) == RED and "file not found" in ws.cell(6, 1).comment.text
    assert fill(ws.cell(6, 3)) == YELLOW  # the same row can have both
    assert ws.cell(2, 2).comment is None and fill(ws.cell(2, 2)) is None and ws.cell(2, 7).value is None
    assert ws.cell(3, 7).value.startswith("agent_email: not a valid email address")
    assert fill(ws.cell(3, 7)) == RED and fill(ws.cell(5, 7)) == YELLOW
    problems = list(wb["Problems"].iter_rows(min_row=2))
    assert [(c[0].value, c[1].value, c[2].value) for c in problems] == [
        (3, "agent_email", "error"), (5, "agent_name", "warning"), (6, "file_path", "error"),
        (6, "agent_name", "warning"),
    ]
    assert [c[4].hyperlink.location for c in problems] == ["'Manifest'!B3", "'Manifest'!C5", "'Manifest'!A6",
                                                           "'Manifest'!C6"]
    assert wb["Problems"].freeze_panes == "A2"


def test_an_xlsx_manifest_with_a_configured_sheet_keeps_its_sheet_name(tmp_path):
    manifest = problem_manifest(tmp_path)
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Notes"
    ws.append(["nothing here"])
    data = wb.create_sheet("Appels")
    for row in csv.reader(manifest.open(encoding="utf-8", newline="")):
        data.append(row)
    wb.save(tmp_path / "m.xlsx")
    cfg_path = write_config(tmp_path, manifest="{sheet: Appels}")
    vm = validate_manifest(load_manifest(tmp_path / "m.xlsx", load_config(cfg_path)), load_config(cfg_path))
    out = write_problem_report(vm, tmp_path / "r.xlsx", "Appels")
    got = openpyxl.load_workbook(out)
    assert got.sheetnames == ["Appels", "Problems"]
    assert fill(got["Appels"].cell(3, 2)) == RED
    # Fixed in place, the report is a manifest again (import_problems is not metadata).
    got["Appels"].cell(3, 2).value = "agent1@example.com"
    got.save(out)
    r = run_cli("validate", out, "--config", cfg_path)
    assert "row 3, agent_email" not in r.out and "import_problems" not in r.out


def test_a_report_path_that_is_not_xlsx_or_is_the_manifest_is_refused_before_reading(tmp_path):
    manifest = problem_manifest(tmp_path)
    cfg = write_config(tmp_path)
    r = run_cli("validate", manifest, "--config", cfg, "--report", tmp_path / "report.csv")
    assert r.code == 2 and "--report: report.csv must end in .xlsx" in r.err and r.out == ""
    xlsx = tmp_path / "m.xlsx"
    xlsx.write_bytes(b"")
    r = run_cli("validate", xlsx, "--config", cfg, "--report", xlsx)
    assert r.code == 2 and "must not be the manifest itself" in r.err
