"""Workbooks as people make them (issue 10, items 3, 5, 6, 18, 19): a title row above the header, a hidden
first sheet, merged cells, formulas never calculated, hidden rows. Real .xlsx files written by openpyxl,
read by a real `validate` run."""

from __future__ import annotations

from pathlib import Path

import openpyxl
from conftest import make_wav
from runkit import CAMPAIGN, HEADERS, run_cli

TITLE = "Export des appels - novembre 2025"


def calls(folder: Path, n: int = 3) -> list[list[str]]:
    out = []
    for i in range(n):
        make_wav(folder / "audio" / f"c{i}.wav", seconds=0.5, seed=i)
        out.append([f"audio/c{i}.wav", f"agent{i}@example.com", f"Agent {i}", str(1_750_000_000 + 60 * i), CAMPAIGN,
                    "Lyon"])
    return out


def config(folder: Path, extra: str = "") -> Path:
    path = folder / "cfg.yaml"
    path.write_text(f"state_dir: {folder / 'state'}\n{extra}", encoding="utf-8")
    return path


def test_a_merged_title_row_above_the_header_is_skipped_and_said(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Appels"
    ws.append([TITLE])
    ws.merge_cells("A1:F1")
    ws.append([])
    ws.append(HEADERS)
    rows = calls(tmp_path)
    rows[1][1] = "not-an-email"
    for r in rows:
        ws.append(r)
    wb.save(tmp_path / "m.xlsx")
    r = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path))
    assert r.code == 1, r.out + r.err
    assert f"note: the headers are on row 3: rows 1 to 2 above them skipped ('{TITLE}')" in r.out
    assert "row 5, agent_email: not a valid email address: 'not-an-email'" in r.out  # Excel's own row number
    assert "3 rows: 2 valid, 1 invalid" in r.out


def test_a_forced_header_row_is_used(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Exported by the PBX"])
    ws.append(HEADERS)
    for r in calls(tmp_path, 2):
        ws.append(r)
    wb.save(tmp_path / "m.xlsx")
    ok = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path, "manifest:\n  header_row: 2\n"))
    assert ok.code == 0, ok.out + ok.err
    wrong = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path, "manifest:\n  header_row: 40\n"))
    assert wrong.code == 2 and "manifest.header_row is 40, but row 40 is not among the rows read" in wrong.err
    bad = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path, "manifest:\n  header_row: first\n"))
    assert bad.code == 2 and "'manifest.header_row' must be auto or a row number" in bad.err


def test_the_first_visible_sheet_is_read_and_column_errors_name_the_sheets(tmp_path):
    wb = openpyxl.Workbook()
    draft = wb.active
    draft.title = "Brouillon"
    draft.append(["notes", "du", "jour"])
    draft.sheet_state = "hidden"
    ws = wb.create_sheet("Appels")
    ws.append(HEADERS)
    for r in calls(tmp_path, 2):
        ws.append(r)
    wb.create_sheet("Totaux").append(["total", 2])
    wb.save(tmp_path / "m.xlsx")
    r = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path))
    assert r.code == 0, r.out + r.err
    assert "2 rows: 2 valid" in r.out
    missing = run_cli("validate", tmp_path / "m.xlsx", "--config",
                      config(tmp_path, "manifest:\n  sheet: Totaux\n"))
    assert missing.code == 2
    assert "m.xlsx, sheet 'Totaux' (the workbook's other sheets: 'Brouillon' (hidden), 'Appels'): missing required" \
        in missing.err


def test_merged_cells_give_every_row_their_value_with_a_warning(tmp_path, monkeypatch):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADERS)
    rows = calls(tmp_path, 4)
    for i, r in enumerate(rows):
        if i in (1, 2, 3):
            r[1] = r[2] = r[5] = ""  # under the merged cells
        ws.append(r)
    ws.merge_cells("B2:B5")  # agent_email for four rows
    ws.merge_cells("C2:C5")
    ws.merge_cells("F2:F5")  # a metadata column
    wb.save(tmp_path / "m.xlsx")
    r = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path))
    assert r.code == 0, r.out + r.err
    assert "warning: row 2, agent_email: merged cells B2:B5: rows 2 to 5 each take the value of its first cell" \
        in r.out
    assert "merged cells F2:F5" in r.out
    assert "1 agent," in r.out

    from importer.config import load_config
    from importer.manifest import load_manifest, validate_manifest

    cfg = load_config(tmp_path / "cfg.yaml")
    vm = validate_manifest(load_manifest(tmp_path / "m.xlsx", cfg), cfg)
    assert [dict(c.metadata)["site"] for c in vm.calls] == ["Lyon"] * 4
    assert {c.agent_email for c in vm.calls} == {"agent0@example.com"}


def test_a_formula_never_calculated_is_named_as_such(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADERS)
    rows = calls(tmp_path, 2)
    ws.append(rows[0])
    ws.append([rows[1][0], '=LOWER("AGENT1@EXAMPLE.COM")', *rows[1][2:]])  # openpyxl saves no cached value
    wb.save(tmp_path / "m.xlsx")
    r = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path))
    assert r.code == 1
    assert "row 3, agent_email: a formula Excel never calculated (the file holds no value for it)" in r.out


def test_hidden_and_filtered_rows_are_imported_with_a_warning_that_counts_them(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Appels"
    ws.append(HEADERS)
    for r in calls(tmp_path, 4):
        ws.append(r)
    ws.row_dimensions[3].hidden = True
    ws.row_dimensions[5].hidden = True
    wb.save(tmp_path / "m.xlsx")
    r = run_cli("validate", tmp_path / "m.xlsx", "--config", config(tmp_path))
    assert r.code == 0, r.out + r.err
    assert "warning: row 3, sheet 'Appels': 2 hidden or filtered rows are imported (rows 3, 5)" in r.out
    assert "4 rows: 4 valid" in r.out


def test_a_csv_title_line_above_the_header_is_skipped_too(tmp_path):
    rows = calls(tmp_path, 2)
    text = TITLE + "\n\n" + ",".join(HEADERS) + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    r = run_cli("validate", tmp_path / "m.csv", "--config", config(tmp_path))
    assert r.code == 0, r.out + r.err
    assert f"note: the headers are on row 3: rows 1 to 2 above them skipped ('{TITLE}')" in r.out
