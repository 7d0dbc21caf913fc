"""What a new user hit in the first hour (issue 10): each test reproduces a defect with a real CLI run on real
files against the sandbox, then checks the fix. Manifest and sheet defects live in tests/manifest/."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import make_wav
from runkit import (
    CAMPAIGN,
    HEADERS,
    child_env,
    child_run_cmd,
    read_results,
    run_cli,
    stop_child_after_calls,
    write_config,
    write_manifest,
)
from test_run import results_of, statuses

from importer.sandbox import Sandbox


@pytest.fixture
def env_key(monkeypatch, sandbox):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", sandbox.api_key)
    return sandbox.api_key


def local_time_manifest(folder: Path, n: int = 3, name: str = "calls.csv") -> Path:
    """Times without an offset, as Excel writes them."""
    rows = []
    for i in range(n):
        make_wav(folder / "audio" / f"call{i}.wav", seconds=0.5, seed=i)
        rows.append([f"audio/call{i}.wav", "agent0@example.com", "Agent 0", f"24/11/2025 09:{i:02d}", CAMPAIGN, "Lyon"])
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        w.writerows(rows)
    return path


def paris_config(folder: Path, state: Path, name: str = "config.yaml") -> Path:
    path = folder / name
    path.write_text(f"state_dir: {state}\nmanifest:\n  timezone: Europe/Paris\n  dayfirst: true\n", encoding="utf-8")
    return path


# --- 1. the config beside the manifest, recorded beside the results ------------------------------------


def test_a_rerun_from_another_folder_reads_times_as_the_first_run_did(sandbox, env_key, tmp_path, monkeypatch):
    work = tmp_path / "work"
    manifest = local_time_manifest(work)
    cfg = paris_config(work, tmp_path / "state")
    monkeypatch.chdir(work)
    first = run_cli("run", "calls.csv", "--api-url", sandbox.url, "--quiet")
    assert first.code == 0, first.out + first.err
    assert f"config: {cfg}" in first.out
    assert "times without an offset are read in Europe/Paris (day first); calls from 2025-11-24 09:00 to " \
           "2025-11-24 09:02 (Europe/Paris)" in first.out
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (elsewhere / "config.yaml").write_text(f"state_dir: {tmp_path / 'state'}\n")  # a UTC config here loses
    again = run_cli("run", manifest, "--api-url", sandbox.url, "--quiet")
    assert again.code == 0, again.out + again.err
    assert statuses(results_of(again.out)) == ["already_uploaded"] * 3
    assert len(sandbox.calls()) == 3


def test_a_results_file_is_rerun_with_the_settings_its_run_recorded(sandbox, env_key, tmp_path, monkeypatch):
    work = tmp_path / "work"
    local_time_manifest(work)
    paris_config(work, tmp_path / "state")
    monkeypatch.chdir(work)
    first = run_cli("run", "calls.csv", "--api-url", sandbox.url, "--quiet")
    results = results_of(first.out)
    info = json.loads(results.with_name(results.name + ".run.json").read_text())
    assert info["config"] == str(work / "config.yaml")
    assert info["settings"]["manifest"] == {"timezone": "Europe/Paris", "dayfirst": True}
    monkeypatch.chdir(tmp_path)
    again = run_cli("run", results, "--api-url", sandbox.url, "--quiet")
    assert again.code == 0, again.out + again.err
    assert f"with the settings recorded by the run that wrote {results.name}" in again.out
    assert "read in Europe/Paris" in again.out
    assert statuses(results_of(again.out)) == ["already_uploaded"] * 3
    assert len(sandbox.calls()) == 3


def test_the_suggested_rerun_repeats_the_config_found_and_the_api(sandbox, env_key, tmp_path, monkeypatch):
    work = tmp_path / "work"
    manifest = local_time_manifest(work)
    (work / "audio" / "call1.wav").unlink()  # one row to fix
    cfg = paris_config(work, tmp_path / "state")
    monkeypatch.chdir(tmp_path)
    r = run_cli("run", manifest, "--api-url", sandbox.url, "--quiet")
    assert r.code == 1
    nxt = next(line for line in r.out.splitlines() if line.startswith("next: fix what import_error says"))
    assert f"--config {cfg}" in nxt and f"--api-url {sandbox.url}" in nxt


def test_an_incomplete_results_file_is_refused_with_a_complete_command(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=2, agents=1)
    cfg = write_config(tmp_path)
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet")
    results = results_of(r.out)
    info_path = results.with_name(results.name + ".run.json")
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "complete": False}))  # as a hard stop leaves it
    again = run_cli("run", results, "--api-url", sandbox.url, "--quiet")
    assert again.code == 2
    assert f"allobrain-import run {manifest.resolve()} --config {cfg} --api-url {info['api']}" in again.err


# --- 1. the same recording is uploaded once per campaign ---------------------------------------------


def test_the_same_recording_under_another_time_zone_name_or_agent_is_not_sent_twice(sandbox, env_key, tmp_path):
    work = tmp_path / "work"
    manifest = local_time_manifest(work)
    utc = write_config(tmp_path)
    assert run_cli("run", manifest, "--config", utc, "--api-url", sandbox.url, "--quiet").code == 0
    # An hour off (another time zone), a copy under another name in another folder, another agent.
    (tmp_path / "copies").mkdir()
    (tmp_path / "copies" / "renamed.wav").write_bytes((work / "audio" / "call2.wav").read_bytes())
    with open(manifest, "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow([str(tmp_path / "copies" / "renamed.wav"), "someone@example.com", "", "1750000000",
                                 CAMPAIGN, ""])
    paris = paris_config(tmp_path, tmp_path / "state", name="paris.yaml")
    r = run_cli("run", manifest, "--config", paris, "--api-url", sandbox.url, "--quiet")
    assert r.code == 0, r.out + r.err
    rows = read_results(results_of(r.out))
    assert [x["import_status"] for x in rows] == ["already_uploaded"] * 4
    assert "same recording already uploaded to this campaign on " in rows[0]["import_error"]
    assert "as call0.wav with timestamp 2025-11-24T09:00:00Z" in rows[0]["import_error"]
    assert "as call2.wav" in rows[3]["import_error"]
    assert "4 rows not sent: the same recording is already uploaded" in r.out
    assert len(sandbox.calls()) == 3
    forced = run_cli("run", manifest, "--config", paris, "--api-url", sandbox.url, "--quiet",
                     "--allow-same-recording")
    assert forced.code == 0 and statuses(results_of(forced.out)) == ["uploaded"] * 4
    assert len(sandbox.calls()) == 7


def test_another_recording_of_the_same_size_is_sent(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=1, agents=1)
    cfg = write_config(tmp_path)
    assert run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet").code == 0
    make_wav(tmp_path / "audio" / "other.wav", seconds=0.5, seed=7)  # same size, other content
    with open(manifest, "a", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerow(["audio/other.wav", "agent0@example.com", "", "1750000300", CAMPAIGN, ""])
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet")
    assert statuses(results_of(r.out)) == ["already_uploaded", "uploaded"]
    assert len(sandbox.calls()) == 2


# --- 4. the ledger, not import_status, decides ---------------------------------------------------------


def _edit_results(path: Path, edit) -> None:  # noqa: ANN001 - a function of the rows
    text = path.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(text.splitlines()))
    edit(rows)
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_a_reused_template_row_left_uploaded_is_sent(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=2, agents=1)
    cfg = write_config(tmp_path)
    results = results_of(run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet").out)
    make_wav(tmp_path / "audio" / "new.wav", seconds=0.7, seed=42)

    def reuse(rows):
        rows[1].update(file_path="audio/new.wav", conversation_timestamp="1750005000")  # status left uploaded

    _edit_results(results, reuse)
    r = run_cli("run", results, "--config", cfg, "--api-url", sandbox.url, "--quiet")
    assert r.code == 0, r.out + r.err
    assert statuses(results_of(r.out)) == ["already_uploaded", "uploaded"]
    assert sorted(c["file_name"] for c in sandbox.calls()) == ["call0000.wav", "call0001.wav", "new.wav"]
    assert "every row is uploaded" in r.out


def test_a_results_file_from_another_ledger_is_taken_on_its_word_and_said_so(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=2, agents=1)
    cfg = write_config(tmp_path)
    results = results_of(run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet").out)
    colleague = tmp_path / "colleague"
    colleague.mkdir()
    other = write_config(colleague)  # another machine's ledger, empty
    r = run_cli("run", results, "--config", other, "--api-url", sandbox.url, "--quiet")
    assert r.code == 0, r.out + r.err
    rows = read_results(results_of(r.out))
    assert [x["import_status"] for x in rows] == ["already_uploaded"] * 2
    assert rows[0]["import_call_id"] and "this ledger has no record of it" in rows[0]["import_error"]
    assert "2 rows skipped on the results file's word alone" in r.out
    assert len(sandbox.calls()) == 2


def test_a_status_column_of_the_users_own_is_a_validation_error(tmp_path):
    manifest = write_manifest(tmp_path, n=2, agents=1)
    text = manifest.read_text().splitlines()
    lines = [text[0] + ",import_status"] + [line + ",done" for line in text[1:]]
    manifest.write_text("\n".join(lines) + "\n")
    r = run_cli("validate", manifest, "--config", write_config(tmp_path))
    assert r.code == 1
    assert "row 2, import_status: 'done' is not a status this tool writes (uploaded, already_uploaded, invalid," in r.out


# --- 7. SIGTERM and SIGHUP are handled as the first Ctrl-C -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_sigterm_and_sighup_finish_in_flight_rows_and_write_everything(tmp_path, sig, code, name):
    with Sandbox(latency_ms=200, data_dir=tmp_path / "d") as sb:
        manifest = write_manifest(tmp_path, n=30, agents=1)
        cfg = write_config(tmp_path)
        results = tmp_path / "out.csv"
        cmd = [*child_run_cmd(manifest, cfg, sb.url, results, workers=2), "--summary-json", str(tmp_path / "s.json")]
        child = stop_child_after_calls(sb, cmd, 4, sig, capture=True)
        out, err = child.communicate(timeout=60)
        assert child.returncode == code, out + err
        assert f"{name}: stopping: in-flight uploads finish" in err
        assert f"INTERRUPTED ({name})" in out
        rows = read_results(results)
        assert len(rows) == 30
        st = [r["import_status"] for r in rows]
        assert st.count("uploaded") == len(sb.calls()) and set(st) == {"uploaded", "not_attempted"}
        assert f"run interrupted ({name})" in rows[-1]["import_error"]
        summary = json.loads((tmp_path / "s.json").read_text())
        assert summary["exit_code"] == code and summary["signal"] == sig
        info = json.loads((tmp_path / "out.csv.run.json").read_text())
        assert info["complete"] is True


@pytest.mark.slow
def test_a_second_ctrl_c_says_how_to_pick_up(tmp_path):
    with Sandbox(latency_ms=3000, data_dir=tmp_path / "d") as sb:
        manifest = write_manifest(tmp_path, n=10, agents=1)
        cfg = write_config(tmp_path)
        cmd = child_run_cmd(manifest, cfg, sb.url, tmp_path / "out.csv", workers=2)
        child = subprocess.Popen(cmd, env=child_env(sb.api_key), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        deadline = time.monotonic() + 30
        while not any(q["path"] == "/calls/audio" for q in sb.requests_log()) and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # the next uploads are in flight (3 s each)
        child.send_signal(signal.SIGINT)
        time.sleep(0.5)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        assert child.returncode == 130
        assert "Ctrl-C again: stopped at once; the calls in flight are unknown until the next run; rerun to send " \
               f"what is left: allobrain-import run {manifest.absolute()} --config {cfg} --api-url {sb.url}" in err


# --- 10, 13, 21. messages that point at the right cause ------------------------------------------------


def test_a_bad_flag_value_is_reported_against_the_flag(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=1)
    r = run_cli("run", manifest, "--config", write_config(tmp_path), "--api-url", sandbox.url, "--workers", "0")
    assert r.code == 2
    assert r.err.strip() == "error: --workers must be auto or a whole number from 1 to 64"


def test_a_refused_key_is_not_sent_to_import_error(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOBRAIN_API_KEY", "wrong")
    r = run_cli("run", write_manifest(tmp_path, n=2), "--config", write_config(tmp_path), "--api-url", sandbox.url,
                "--quiet")
    assert r.code == 3
    assert "next: check the API key (127.0.0.1" in r.out
    assert "fix what import_error says" not in r.out


def test_a_campaign_that_does_not_exist_is_named_in_the_advice(tmp_path, monkeypatch):
    with Sandbox(campaigns=["aaaaaaaaaaaaaaaaaaaaaaaa"], data_dir=tmp_path / "d") as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        r = run_cli("run", write_manifest(tmp_path, n=8, agents=1), "--config", write_config(tmp_path),
                    "--api-url", sb.url, "--quiet", "--workers", "1")
    assert r.code == 1
    assert f"next: campaign {CAMPAIGN} answered not found at 127.0.0.1" in r.out


def test_a_yaml_error_is_one_line_with_its_place(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("upload:\n  workers: [4\n")
    r = run_cli("validate", write_manifest(tmp_path, n=1), "--config", cfg)
    assert r.code == 2
    assert len(r.err.strip().splitlines()) == 1
    assert "is not valid YAML: line 3, column 1:" in r.err


# --- 11, 12, 14. cells as Excel and people damage them --------------------------------------------------


def _one_column_manifest(tmp_path: Path, column: str, values: list[str]) -> Path:
    rows = []
    for i, value in enumerate(values):
        make_wav(tmp_path / "audio" / f"v{i}.wav", seconds=1.5, seed=i)
        row = {"file_path": f"audio/v{i}.wav", "agent_email": "a@example.com", "agent_name": "A",
               "conversation_timestamp": "1750000000", "campaign_id": CAMPAIGN, "site": ""}
        row[column] = value
        rows.append(row)
    path = tmp_path / "m.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=HEADERS)
        w.writeheader()
        w.writerows(rows)
    return path


def test_excel_damaged_timestamps_say_what_excel_meant(tmp_path):
    m = _one_column_manifest(tmp_path, "conversation_timestamp",
                             ["45982.395833", "1.73573E+12", "1735725600,0", "24/11/25 09:30"])
    r = run_cli("validate", m, "--config", write_config(tmp_path))
    assert r.code == 1
    assert ("row 2, conversation_timestamp: an Excel date serial ('45982.395833' = 2025-11-21 09:30): format the "
            "column as a date or as text in Excel") in r.out
    assert "row 3, conversation_timestamp: a number Excel shortened to scientific notation ('1.73573E+12'" in r.out
    assert "row 4, conversation_timestamp: a number with a decimal part added by Excel ('1735725600,0' = " \
           "2025-01-01T10:00:00Z)" in r.out
    assert "row 5" not in r.out  # LibreOffice's French short date, two-digit year: 2025
    assert "4 rows: 1 valid, 3 invalid" in r.out


def test_campaign_ids_no_campaign_has_are_errors_and_odd_ones_warnings(tmp_path):
    m = _one_column_manifest(tmp_path, "campaign_id", ["../../etc", "camp aign", "665dc5c57275b74ce35c03zz", CAMPAIGN])
    r = run_cli("validate", m, "--config", write_config(tmp_path))
    assert r.code == 1
    assert "row 2, campaign_id: '../../etc' is not a campaign id: ids are letters and digits" in r.out
    assert "row 3, campaign_id: 'camp aign' is not a campaign id" in r.out
    assert "warning: row 4, campaign_id: '665dc5c57275b74ce35c03zz' does not look like an AlloBrain campaign id" in r.out
    assert "row 5" not in r.out
    assert "4 rows: 2 valid, 2 invalid, 1 warning" in r.out


# --- 9. --results never overwrites what is not a results file ----------------------------------------


def test_results_refuses_other_files_and_other_formats(sandbox, env_key, tmp_path):
    manifest = write_manifest(tmp_path, n=1)
    cfg = write_config(tmp_path)
    recording = tmp_path / "audio" / "call0000.wav"
    before = recording.read_bytes()
    for target, message in ((recording, "results are written as .csv or .xlsx files"),
                            (cfg, "results are written as .csv or .xlsx files"),
                            (tmp_path / "out.ods", "results are written as .csv or .xlsx files"),
                            (tmp_path / "audio", "results are written as .csv or .xlsx files")):
        r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", target)
        assert r.code == 2 and message in r.err, r.err
    theirs = tmp_path / "theirs.csv"
    theirs.write_text("name,amount\nbob,3\n")
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", theirs)
    assert r.code == 2 and "exists and is not a results file written by this tool" in r.err
    assert theirs.read_text() == "name,amount\nbob,3\n" and recording.read_bytes() == before
    assert sandbox.requests_log() == []
    ours = tmp_path / "ours.csv"
    assert run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", ours).code == 0
    again = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", ours)
    assert again.code == 0 and statuses(ours) == ["already_uploaded"]  # a results file of ours: replaced
    # The same rules for workbooks: someone's spreadsheet is refused, an XLSX results file of ours replaced.
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(["name", "amount"])
    wb.save(tmp_path / "theirs.xlsx")
    r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results",
                tmp_path / "theirs.xlsx")
    assert r.code == 2 and "exists and is not a results file written by this tool" in r.err
    ours_xlsx = tmp_path / "ours.xlsx"
    for _ in range(2):
        r = run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet", "--results", ours_xlsx)
        assert r.code == 0, r.err
    header, first = openpyxl.load_workbook(ours_xlsx)["Results"].iter_rows(max_row=2, values_only=True)
    assert dict(zip(header, first, strict=True))["import_status"] == "already_uploaded"


# --- 17. paths from another machine, broken links, what is not audio ----------------------------------


def test_windows_paths_broken_links_and_non_audio_say_what_they_are(tmp_path):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "gone.wav").symlink_to(tmp_path / "audio" / "nowhere.wav")
    (tmp_path / "audio" / "notes.wav").write_bytes(b"%PDF-1.4 not a recording")
    m = _one_column_manifest(tmp_path, "file_path", [r"C:\calls\a.wav", r"\\server\share\a.wav", "audio/gone.wav",
                                                     "audio/notes.wav"])
    r = run_cli("validate", m, "--config", write_config(tmp_path))
    assert r.code == 1
    assert r"row 2, file_path: a Windows path on drive C: (C:\calls\a.wav): this machine cannot see it" in r.out
    assert r"row 3, file_path: a network share path (\\server\share\a.wav): this machine cannot see it" in r.out
    assert f"row 4, file_path: broken link: {tmp_path / 'audio' / 'gone.wav'} points to " \
           f"{tmp_path / 'audio' / 'nowhere.wav'}, which does not exist" in r.out
    assert f"row 5, file_path: not an audio file (content looks like PDF): {tmp_path / 'audio' / 'notes.wav'}" in r.out


# --- 20. import_row stays the first manifest's row ----------------------------------------------------


def test_a_rerun_keeps_the_original_spreadsheet_row(sandbox, env_key, tmp_path):
    extra = [{"file_path": "audio/late.wav", "agent_email": "agent0@example.com", "agent_name": "",
              "conversation_timestamp": "1750009999", "campaign_id": CAMPAIGN, "site": ""}]
    manifest = write_manifest(tmp_path, n=2, agents=1, extra_rows=extra)
    text = manifest.read_text().splitlines()
    manifest.write_text("\n".join([text[0], "", "", *text[1:]]) + "\n")  # blank rows: data on rows 4, 5, 6
    cfg = write_config(tmp_path)
    first = results_of(run_cli("run", manifest, "--config", cfg, "--api-url", sandbox.url, "--quiet").out)
    assert [r["import_row"] for r in read_results(first)] == ["4", "5", "6"]
    make_wav(tmp_path / "audio" / "late.wav", seed=5)
    second = results_of(run_cli("run", first, "--config", cfg, "--api-url", sandbox.url, "--quiet").out)
    assert [(r["import_row"], r["import_status"]) for r in read_results(second)] == [
        ("4", "already_uploaded"), ("5", "already_uploaded"), ("6", "uploaded")]


# --- 15. the sandbox's flags and its memory --------------------------------------------------------------


def test_bad_sandbox_flags_are_usage_errors_naming_the_flag():
    for argv, message in ((["--port", "70000"], "--port must be from 1 to 65535"),
                          (["--port", "-1"], "--port must be from 1 to 65535"),
                          (["--host", "0.0.0.0"], "would serve the public sandbox key beyond this machine"),
                          (["--api-key", ""], "--api-key is empty"),
                          (["--rate-limit", "nan"], "--rate-limit must be a number")):
        r = run_cli("sandbox", *argv)
        assert r.code == 2 and message in r.err, (argv, r.err)


@pytest.mark.slow
def test_sigterm_right_after_start_never_leaves_a_temp_folder(tmp_path):
    import socket
    import sys

    temp = tmp_path / "tmp"
    temp.mkdir()
    for delay in (0.3, 0.6, 1.0, 2.0):  # while importing, while binding, while serving
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-m", "importer", "sandbox", "--port", str(port)],
                                 env={**child_env("x"), "TMPDIR": str(temp)}, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=20)
        if "serving at" in out:
            assert child.returncode == 0 and "sandbox stopped" in out
        left = list(temp.iterdir())
        assert left == [], f"left behind after a SIGTERM at {delay} s: {left}"


def test_a_restarted_sandbox_with_a_data_dir_remembers_agents_and_calls(tmp_path, monkeypatch):
    data = tmp_path / "data"
    manifest = write_manifest(tmp_path, n=2, agents=1)
    cfg = write_config(tmp_path)
    with Sandbox(data_dir=data) as sb:
        monkeypatch.setenv("ALLOBRAIN_API_KEY", sb.api_key)
        assert run_cli("run", manifest, "--config", cfg, "--api-url", sb.url, "--quiet").code == 0
        calls, agents = sb.calls(), sb.agents()
    with Sandbox(data_dir=data) as again:
        assert again.calls() == calls and again.agents() == agents
        import requests

        listed = requests.get(again.url + "/_sandbox/calls", timeout=5).json()
        assert len(listed if isinstance(listed, list) else listed["calls"]) == 2


# --- 21. --traceback anywhere --------------------------------------------------------------------------


def test_traceback_is_accepted_after_the_command(tmp_path):
    r = run_cli("validate", write_manifest(tmp_path, n=1), "--config", write_config(tmp_path), "--traceback")
    assert r.code == 0, r.err
