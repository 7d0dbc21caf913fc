"""The web page in a real browser (headless Chromium): the whole job on the shipped example and on a broken
manifest, against the sandbox, asserting what a person sees. A screenshot of each step goes to SHOTS."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import make_wav
from runkit import CAMPAIGN, REPO, read_results
from uikit import chrome, need_browser, quit_chrome, shot, start_ui, wait_for_file

from importer.report import fmt_bytes

pytestmark = pytest.mark.slow


@pytest.fixture
def browser(tmp_path):
    need_browser()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = chrome(downloads)
    yield driver, downloads
    quit_chrome(driver)


def _wait(driver, condition, timeout: float = 30):  # noqa: ANN001, ANN202
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _text(driver, css: str) -> str:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text.strip()


def _click(driver, css: str) -> None:  # noqa: ANN001
    """Click something that loads another page, and wait until it has."""
    from selenium.webdriver.common.by import By

    _go(driver, driver.find_element(By.CSS_SELECTOR, css))


def _go(driver, element) -> None:  # noqa: ANN001
    # A mark on the old document: the new one does not have it (sturdier than waiting for a stale element,
    # which Chromium sometimes answers with an inspector error while the page is being replaced).
    driver.execute_script("window.__leaving = true")
    element.click()
    _wait(driver, lambda d: d.execute_script(
        "return window.__leaving === undefined && document.readyState === 'complete'"))


def _wait_finished(driver) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.find_element(By.ID, "to-results").is_displayed(), timeout=60)


def _shipped_examples(tmp_path: Path) -> Path:
    """A copy of manifests/ (the results are written beside the manifest, never into the repository)."""
    folder = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", folder, ignore=shutil.ignore_patterns("results"))
    return folder


def test_the_whole_job_on_the_shipped_example(browser, tmp_path):
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    folder = _shipped_examples(tmp_path)
    ui = start_ui(folder, cwd=tmp_path)
    try:
        driver.get(ui.url)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Choose a spreadsheet"
        assert "Sandbox" in _text(driver, "#destination-badge")  # no key in the environment: the sandbox
        names = [b.text for b in driver.find_elements(By.CSS_SELECTOR, ".picklist button")]
        assert "example.csv" in names and "exemple-fr.csv" in names
        shot(driver, "example-1-choose")
        _click(driver, "button[value='example.csv']")

        # Columns: the mapping from the headers, each required field found; an example value beside it.
        assert driver.find_element(By.TAG_NAME, "h1").text == "Columns"
        from selenium.webdriver.support.ui import Select

        assert Select(driver.find_element(By.ID, "col_file_path")).first_selected_option.text == "file_path"
        assert Select(driver.find_element(By.ID, "col_agent_email")).first_selected_option.text == "agent_email"
        assert _text(driver, "#ex_file_path") == "audio/call-001.wav"
        shot(driver, "example-2-columns")
        _click(driver, "form[action='/columns'] button[type=submit]")

        # Problems: every count as `validate` gives it.
        assert driver.find_element(By.TAG_NAME, "h1").text == "Problems"
        saved = (folder / "config.yaml").read_text(encoding="utf-8")
        assert "columns:" in saved and "file_path: file_path" in saved
        assert _text(driver, "#count-rows") == "12" and _text(driver, "#count-valid") == "12"
        assert _text(driver, "#count-invalid") == "0" and _text(driver, "#count-agents") == "4"
        assert _text(driver, "#all-valid") == "Every row is valid."
        shot(driver, "example-3-problems")
        _click(driver, "#to-plan")

        # Plan: what a dry run prints.
        assert _text(driver, "#plan-calls") == "12"
        assert _text(driver, "#plan-agents").startswith("4")
        assert _text(driver, "#plan-already") == "0"
        audio_bytes = sum(f.stat().st_size for f in (folder / "audio").iterdir())
        assert _text(driver, "#plan-bytes") == fmt_bytes(audio_bytes)
        assert _text(driver, "#plan-audio") == "23.8s (0.01 h)"
        shot(driver, "example-4-plan")
        _click(driver, "#start")

        # Run: the bars reach the end, the counts say 12 uploaded.
        _wait_finished(driver)
        assert _text(driver, "#run-state") == "Finished."
        bar = driver.find_element(By.ID, "bar-uploads")
        assert bar.get_attribute("value") == bar.get_attribute("max") == "12"
        assert _text(driver, "#text-uploads") == "12 / 12"
        assert _text(driver, "#c-uploaded") == "12"
        shot(driver, "example-5-run")
        _click(driver, "#to-results a")

        # Results: the counts, the filter, the download whose content is the results file.
        assert driver.find_element(By.TAG_NAME, "h1").text == "Results", _text(driver, "main")
        assert _text(driver, "#n-uploaded") == "12"
        assert _text(driver, "#nothing-left").startswith("Nothing left to do")
        rows = driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        assert len(rows) == 12 and all("uploaded" in r.text for r in rows)
        shot(driver, "example-6-results")
        driver.find_element(By.LINK_TEXT, "Download CSV").click()
        got = wait_for_file(downloads, ".csv")
        on_disk = Path(_text(driver, "#results-path"))
        assert got.read_bytes() == on_disk.read_bytes()
        downloaded = read_results(got)
        assert [r["import_status"] for r in downloaded] == ["uploaded"] * 12
        assert [r["import_row"] for r in downloaded] == [str(n) for n in range(2, 14)]

        # The run is listed among the past runs.
        driver.get(ui.base + "/")
        past = driver.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=past-title] tbody tr")
        assert len(past) == 1 and "example.csv" in past[0].text and "complete" in past[0].text
    finally:
        assert ui.stop() == 0, ui.err
    assert ui.err == ""


def _broken_manifest(folder: Path) -> Path:
    for i in (1, 2, 3):  # the third is unusually short: a warning, sent all the same
        make_wav(folder / "audio" / f"c{i}.wav", seconds=3 if i < 3 else 0.5, seed=i)
    rows = [
        ["audio/c1.wav", "ana@example.com", "Ana Lima", "2025-06-01T10:00:00+02:00", CAMPAIGN],
        ["audio/c2.wav", "bad-email", "Bob", "2025-06-01T10:05:00+02:00", CAMPAIGN],
        ["audio/missing.wav", "carl@example.com", "Carl", "2031-01-01T10:00:00+01:00", CAMPAIGN],
        ["audio/c3.wav", "dina@example.com", "Dina", "2025-06-01T10:15:00+02:00", CAMPAIGN],
    ]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";")
    w.writerow(["Fichier", "Email agent", "Nom", "Date appel", "Campagne"])
    w.writerows(rows)
    path = folder / "upload-me.csv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def test_a_broken_manifest_uploaded_mapped_shown_run_and_rerun(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, downloads = browser
    source = _broken_manifest(tmp_path / "elsewhere")
    work = tmp_path / "work"
    shutil.copytree(tmp_path / "elsewhere" / "audio", work / "audio")
    ui = start_ui(work, cwd=tmp_path)
    try:
        driver.get(ui.url)
        assert driver.find_elements(By.CSS_SELECTOR, ".picklist button") == []
        driver.find_element(By.ID, "manifest").send_keys(str(source))
        base = driver.find_element(By.ID, "base")
        assert base.get_attribute("value") == str(work.resolve())
        _click(driver, "form[action='/choose/upload'] button[type=submit]")
        assert (work / "upload-me.csv").read_bytes() == source.read_bytes()  # saved beside the recordings

        # Columns: French headers, guessed by `init`'s matcher; save without the required ones is refused by name.
        assert driver.find_element(By.TAG_NAME, "h1").text == "Columns"
        assert Select(driver.find_element(By.ID, "col_file_path")).first_selected_option.text == "Fichier"
        for field in ("file_path", "agent_email", "conversation_timestamp"):
            Select(driver.find_element(By.ID, f"col_{field}")).select_by_value("")
        _click(driver, "form[action='/columns'] button[type=submit]")
        errors = _text(driver, ".flash.error")
        assert "Choose the column for “Recording” (required)" in errors
        assert "“Agent email”" in errors and "“Date and time of the call”" in errors
        assert not (work / "config.yaml").exists()
        for field, header in (("file_path", "Fichier"), ("agent_email", "Email agent"), ("agent_name", "Nom"),
                              ("conversation_timestamp", "Date appel"), ("campaign_id", "Campagne")):
            Select(driver.find_element(By.ID, f"col_{field}")).select_by_visible_text(header)
        assert _text(driver, "#ex_agent_email") == "ana@example.com"  # the example follows the choice
        shot(driver, "broken-2-columns")
        _click(driver, "form[action='/columns'] button[type=submit]")
        saved = (work / "config.yaml").read_text(encoding="utf-8")
        assert "agent_email: Email agent" in saved and "conversation_timestamp: Date appel" in saved
        # The file saved holds exactly the mapping chosen on the page (init's guessed config around it).
        assert yaml.safe_load(saved)["columns"] == {
            "file_path": "Fichier", "agent_email": "Email agent", "agent_name": "Nom",
            "conversation_timestamp": "Date appel", "campaign_id": "Campagne"}
        assert saved.startswith("# config.yaml guessed by `allobrain-import init` from upload-me.csv")

        # Problems: the counts, and the very cells that are wrong, highlighted with their problem.
        assert _text(driver, "#count-rows") == "4"
        assert _text(driver, "#count-valid") == "2" and _text(driver, "#count-invalid") == "2"
        table = driver.find_element(By.ID, "problem-table")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["3", "4", "5"]
        assert _text(driver, "#count-warnings") == "1"
        warned = [(c.text.splitlines()[0], c.get_attribute("title")) for c in table.find_elements(By.CSS_SELECTOR, "td.cell-warning")]
        assert warned == [("audio/c3.wav", "audio is only 0.50 s long")]
        bad = {(r.find_element(By.TAG_NAME, "th").text, c.text.splitlines()[0], c.get_attribute("title"))
               for r in rows for c in r.find_elements(By.CSS_SELECTOR, "td.cell-error")}
        assert {(row, value) for row, value, _ in bad} == {
            ("3", "bad-email"), ("4", "audio/missing.wav"), ("4", "2031-01-01T10:00:00+01:00")}
        titles = {value: title for _, value, title in bad}
        assert "not a valid email address" in titles["bad-email"]
        assert "file not found" in titles["audio/missing.wav"]
        assert "in the future" in titles["2031-01-01T10:00:00+01:00"]
        # Valid cells are not marked.
        assert all("ana@example.com" not in c.text for c in table.find_elements(By.CSS_SELECTOR, "td.cell-error"))
        shot(driver, "broken-3-problems")
        _check_annotated_workbook(driver, downloads)
        _click(driver, "#to-plan")

        assert _text(driver, "#plan-calls") == "2" and _text(driver, "#plan-invalid").startswith("2")
        assert _text(driver, "#plan-audio") == "3.5s (0.00 h)"
        shot(driver, "broken-4-plan")
        _click(driver, "#start")
        _wait_finished(driver)
        assert _text(driver, "#c-uploaded") == "2" and _text(driver, "#c-invalid") == "2"
        _click(driver, "#to-results a")

        # Results: filter by status; the rerun button counts what is left.
        assert _text(driver, "#n-uploaded") == "2" and _text(driver, "#n-invalid") == "2"
        _click(driver, "a.status-invalid")
        rows = driver.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["3", "4"]
        assert "not a valid email address" in rows[0].text
        assert _text(driver, "#rerun") == "Rerun what is left (2 rows)"
        shot(driver, "broken-6-results-invalid")
        driver.find_element(By.LINK_TEXT, "Download CSV").click()
        got = read_results(wait_for_file(downloads, ".csv"))
        assert [r["import_status"] for r in got] == ["uploaded", "invalid", "invalid", "uploaded"]
        assert got[1]["Email agent"] == "bad-email"  # the original columns, verbatim

        # Rerun what is left: the two uploaded rows are known to the ledger and are not sent again.
        _click(driver, "#rerun")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Plan"
        assert _text(driver, "#plan-calls") == "0" and _text(driver, "#plan-already") == "2"
        assert _text(driver, "#plan-invalid").startswith("2")
        shot(driver, "broken-7-rerun-plan")
    finally:
        assert ui.stop() == 0, ui.err


def _check_annotated_workbook(driver, downloads: Path) -> None:  # noqa: ANN001
    """The problems step's download, opened as Excel would: the wrong cells red (the warning yellow) with the
    problem as their comment, valid cells plain, and a Problems sheet listing each one."""
    from openpyxl import load_workbook
    from selenium.webdriver.common.by import By

    link = driver.find_element(By.ID, "workbook")
    assert link.text == "Download the annotated workbook"
    link.click()
    got = wait_for_file(downloads, ".xlsx")
    assert got.name == "upload-me-problems.xlsx"
    wb = load_workbook(got)
    first = wb.worksheets[0]
    header = [c.value for c in first[1]]
    assert header == ["Fichier", "Email agent", "Nom", "Date appel", "Campagne", "import_problems"]

    def cell(row: int, column: str):  # noqa: ANN202
        return first.cell(row=row, column=header.index(column) + 1)

    def fill(c) -> str:  # noqa: ANN001
        return c.fill.fgColor.rgb[-6:] if c.fill.fill_type == "solid" else "none"

    red, yellow = "FFC7CE", "FFFF99"  # Excel's "Bad" red; a warning's yellow
    bad = {(3, "Email agent"): "not a valid email address", (4, "Fichier"): "file not found",
           (4, "Date appel"): "in the future"}
    for (row, column), words in bad.items():
        c = cell(row, column)
        assert fill(c) == red, (row, column, fill(c))
        assert c.comment is not None and words in c.comment.text, (row, column)
    warned = cell(5, "Fichier")
    assert warned.value == "audio/c3.wav" and fill(warned) == yellow
    assert "audio is only 0.50 s long" in warned.comment.text
    for row in (2, 5):  # the valid rows' other cells: no colour, no comment
        for column in ("Email agent", "Nom", "Date appel", "Campagne"):
            assert fill(cell(row, column)) == "none" and cell(row, column).comment is None, (row, column)
    assert "not a valid email address" in cell(3, "import_problems").value
    assert wb.sheetnames == ["Manifest", "Problems"]
    listed = [[c.value for c in r] for r in wb["Problems"].iter_rows(min_row=2)]
    assert sorted((r[0], r[1], r[2]) for r in listed) == [
        (3, "Email agent", "error"), (4, "Date appel", "error"), (4, "Fichier", "error"),
        (5, "Fichier", "warning")]


def test_xlsx_results_of_the_shipped_example(browser, tmp_path):
    """Excel chosen on the plan step: the results step offers the workbook, and it is a results file."""
    from openpyxl import load_workbook
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, downloads = browser
    folder = _shipped_examples(tmp_path)
    ui = start_ui(folder, cwd=tmp_path)
    try:
        driver.get(ui.url)
        _click(driver, "button[value='example.csv']")
        driver.get(ui.base + "/plan")
        choice = Select(driver.find_element(By.ID, "format"))
        assert choice.first_selected_option.text == "CSV"  # a CSV manifest: CSV results unless chosen
        choice.select_by_visible_text("Excel (.xlsx)")
        _click(driver, "#start")
        _wait_finished(driver)
        assert _text(driver, "#c-uploaded") == "12"
        _click(driver, "#to-results a")
        on_disk = Path(_text(driver, "#results-path"))
        assert on_disk.suffix == ".xlsx" and on_disk.parent == folder / "results"
        assert _text(driver, "#n-uploaded") == "12"
        labels = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "p.buttons a.button")]
        assert labels == ["Download Excel (.xlsx)"]  # the format written, and only it
        shot(driver, "xlsx-results")
        driver.find_element(By.LINK_TEXT, "Download Excel (.xlsx)").click()
        got = wait_for_file(downloads, ".xlsx")
        assert got.read_bytes() == on_disk.read_bytes()
        rows = list(load_workbook(got, read_only=True).worksheets[0].iter_rows(values_only=True))
        status = rows[0].index("import_status")
        assert [r[status] for r in rows[1:]] == ["uploaded"] * 12
        assert [r[rows[0].index("file_path")] for r in rows[1:3]] == ["audio/call-001.wav", "audio/call-002.wav"]
    finally:
        assert ui.stop() == 0, ui.err
    assert ui.err == ""


def test_stop_acts_as_ctrl_c_and_the_rerun_sends_the_rest(browser, tmp_path):
    from selenium.webdriver.common.by import By

    driver, _ = browser
    from runkit import write_manifest

    write_manifest(tmp_path / "calls", n=40, agents=2, seconds=0.2)
    # 8 calls a second: long enough to press Stop, and the plan's finish estimate has a rate to go by.
    (tmp_path / "calls" / "config.yaml").write_text("upload:\n  max_per_second: 8\n  workers: 2\n", encoding="utf-8")
    ui = start_ui(tmp_path / "calls", cwd=tmp_path)
    try:
        driver.get(ui.url)
        _click(driver, "button[value='calls.csv']")
        driver.get(ui.base + "/plan")
        assert _text(driver, "#plan-finish").startswith("at most 8/s: about 5.0s")
        _click(driver, "#start")
        _wait(driver, lambda d: int(d.find_element(By.ID, "c-uploaded").text) >= 3)
        shot(driver, "stop-1-running")
        _click(driver, "#stop")
        _wait_finished(driver)
        uploaded = int(_text(driver, "#c-uploaded"))
        left = int(_text(driver, "#c-not_attempted"))
        assert uploaded >= 3 and left > 0 and uploaded + left == 40
        assert _text(driver, "#stopped-why").startswith("with the Stop button (or Ctrl-C)")
        shot(driver, "stop-2-stopped")
        _click(driver, "#to-results a")
        assert _text(driver, "#rerun") == f"Rerun what is left ({left} rows)"
        _click(driver, "#rerun")
        assert _text(driver, "#plan-calls") == str(left) and _text(driver, "#plan-already") == str(uploaded)
        _click(driver, "#start")
        _wait_finished(driver)
        assert _text(driver, "#c-uploaded") == str(left) and _text(driver, "#c-already_uploaded") == str(uploaded)
        bar = driver.find_element(By.ID, "bar-uploads")
        assert bar.get_attribute("value") == bar.get_attribute("max") == str(left)
        shot(driver, "stop-3-rerun-done")
    finally:
        assert ui.stop() == 0, ui.err


def test_french_labels_for_a_french_browser(tmp_path):
    need_browser()
    from selenium.webdriver.common.by import By

    driver = chrome(tmp_path, lang="fr-FR,fr")
    folder = _shipped_examples(tmp_path)
    ui = start_ui(folder, cwd=tmp_path)
    try:
        driver.get(ui.url)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Choisir un tableur"
        assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
        _click(driver, "button[value='exemple-fr.csv']")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Colonnes"
        shot(driver, "fr-2-colonnes")
    finally:
        quit_chrome(driver)
        assert ui.stop() == 0, ui.err
