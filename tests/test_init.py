"""`allobrain-import init`: a config guessed from real-looking exports, then `validate` with it.

Each export is written as the tool that made it writes it (French Excel: cp1252, `;`, CRLF; Google Sheets:
UTF-8 without BOM, month-first dates; an XLSX with a title row and real date cells); `init` must find the
mapping and the settings, and `validate` with the written config must find zero problems and read each
timestamp in the right zone.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import yaml
from conftest import make_wav
from runkit import CAMPAIGN, run_cli

from importer.config import load_config
from importer.guess import guess_config
from importer.manifest import load_manifest, validate_manifest

PARIS, UTC = ZoneInfo("Europe/Paris"), dt.UTC


def audio(folder: Path, n: int) -> list[str]:
    return [make_wav(folder / "enregistrements" / f"appel-{i}.wav", seconds=1.5, seed=i).name for i in range(n)]


def french_excel(folder: Path) -> tuple[Path, list[dt.datetime]]:
    names = audio(folder, 3)
    lines = ["Fichier;Email Agent;Nom agent;Date d'appel;Téléphone client;Campagne;N° client;Durée"]
    when = [dt.datetime(2025, 11, 25, 14, 30), dt.datetime(2025, 11, 3, 9, 5), dt.datetime(2025, 10, 14, 17, 45)]
    phones = ["06 12 34 56 78", "01 42 68 53 00", "+33 6 98 76 54 32"]
    for i, (name, t) in enumerate(zip(names, when, strict=True)):
        lines.append(f"enregistrements\\{name};Agent.{i}@Exemple.fr;Agent Numéro {i};{t:%d/%m/%Y %H:%M};"
                     f"{phones[i]};{CAMPAIGN};C-00{i};2 min")
    path = folder / "export appels.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))
    return path, [t.replace(tzinfo=PARIS) for t in when]


def english(folder: Path) -> tuple[Path, list[dt.datetime]]:
    names = audio(folder, 2)
    when = [dt.datetime(2025, 11, 25, 14, 30), dt.datetime(2025, 11, 26, 8, 0)]
    lines = ["Recording File,Agent Emial,Agent First Name,Agent Last Name,Call Date,Campaign ID,Customer Phone,Notes"]
    for i, (name, t) in enumerate(zip(names, when, strict=True)):
        lines.append(f"enregistrements/{name},agent{i}@example.com,Ann,Lee{i},{t:%Y-%m-%d %H:%M:%S},{CAMPAIGN},"
                     f"+1 212 736 500{i},\"follow up, twice\"")
    path = folder / "calls.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    return path, [t.replace(tzinfo=UTC) for t in when]


def google_sheets(folder: Path) -> tuple[Path, list[dt.datetime]]:
    """Google Sheets' "Download as CSV" in a US locale: UTF-8 without BOM, CRLF, month/day/year."""
    names = audio(folder, 3)
    when = [dt.datetime(2025, 11, 25, 14, 30), dt.datetime(2025, 3, 4, 10, 0), dt.datetime(2025, 12, 1, 9, 15)]
    lines = ["Recording,Agent email,Timestamp,Campaign,Site"]
    for i, (name, t) in enumerate(zip(names, when, strict=True)):
        lines.append(f"enregistrements/{name},rep{i}@example.com,{t.month}/{t.day}/{t.year} {t:%H:%M:%S},"
                     f"{CAMPAIGN},Austin")
    path = folder / "Call log - Sheet1.csv"
    path.write_bytes(("\r\n".join(lines)).encode("utf-8"))
    return path, [t.replace(tzinfo=UTC) for t in when]


def xlsx_with_title(folder: Path) -> tuple[Path, list[dt.datetime]]:
    names = audio(folder, 2)
    when = [dt.datetime(2025, 7, 14, 11, 0), dt.datetime(2025, 7, 15, 16, 20)]
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Lisez-moi"
    ws.append(["Ce classeur contient l'export du centre d'appels"])
    data = wb.create_sheet("Appels")
    data.append(["Export des appels — juillet 2025"])
    data.append([])
    data.append(["Fichier audio", "Courriel agent", "Date et heure", "Campagne", "Téléphone"])
    for i, (name, t) in enumerate(zip(names, when, strict=True)):
        data.append([f"enregistrements/{name}", f"conseiller{i}@exemple.fr", t, CAMPAIGN, f"061234567{i}"])
        data.cell(data.max_row, 5).data_type = "s"
    path = folder / "appels.xlsx"
    wb.save(path)
    return path, [t.replace(tzinfo=PARIS) for t in when]


CORPUS = {"french-excel": french_excel, "english": english, "google-sheets": google_sheets,
          "xlsx-title-row": xlsx_with_title}
EXPECTED = {
    "french-excel": ({"file_path": "Fichier", "agent_email": "Email Agent", "agent_name": "Nom agent",
                      "conversation_timestamp": "Date d'appel", "campaign_id": "Campagne"},
                     ["Téléphone client"], True, "Europe/Paris"),
    "english": ({"file_path": "Recording File", "agent_email": "Agent Emial", "agent_first_name": "Agent First Name",
                 "agent_last_name": "Agent Last Name", "conversation_timestamp": "Call Date",
                 "campaign_id": "Campaign ID"}, ["Customer Phone"], True, "UTC"),
    "google-sheets": ({"file_path": "Recording", "agent_email": "Agent email", "conversation_timestamp": "Timestamp",
                       "campaign_id": "Campaign"}, [], False, "UTC"),
    "xlsx-title-row": ({"file_path": "Fichier audio", "agent_email": "Courriel agent",
                        "conversation_timestamp": "Date et heure", "campaign_id": "Campagne"},
                       ["Téléphone"], True, "Europe/Paris"),
}


@pytest.mark.parametrize("kind", list(CORPUS))
def test_init_then_validate_finds_zero_problems_and_the_right_times(tmp_path, kind):
    manifest, times = CORPUS[kind](tmp_path)
    r = run_cli("init", manifest)
    assert r.code == 0, r.out + r.err
    config = tmp_path / "config.yaml"
    assert f"wrote {config}" in r.out
    assert f"next: check it, then run: allobrain-import validate '{manifest}' --config {config}" in r.out or \
        f"next: check it, then run: allobrain-import validate {manifest} --config {config}" in r.out
    mapping, phones, dayfirst, zone = EXPECTED[kind]
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert written["columns"] == mapping
    assert written["metadata"]["phone_columns"] == phones
    assert written["manifest"]["dayfirst"] is dayfirst
    assert written["manifest"]["timezone"] == zone
    assert f"time zone: {zone} (" in r.out  # said aloud
    # The state folder is the test's: validate never touches a real ledger, but keep the config honest.
    v = run_cli("validate", manifest, "--config", config)
    assert v.code == 0, v.out + v.err
    problems = [line for line in v.out.splitlines() if line.startswith(("row ", "warning: row "))]
    assert problems == [], v.out  # zero problems, warnings included
    cfg = load_config(config)
    vm = validate_manifest(load_manifest(manifest, cfg), cfg)
    assert [c.timestamp for c in vm.calls] == [int(t.timestamp()) for t in times]


def test_what_init_says_for_the_french_export(tmp_path):
    manifest, _ = french_excel(tmp_path)
    guess = guess_config(manifest)
    assert guess.encoding == "cp1252" and guess.delimiter == ";"
    assert guess.lines() == [
        "read export appels.csv (cp1252, ';' delimiter): header on row 1, 3 rows",
        "columns:",
        "  file_path               <- 'Fichier'",
        "  agent_email             <- 'Email Agent'",
        "  agent_name              <- 'Nom agent'",
        "  conversation_timestamp  <- \"Date d'appel\"",
        "  campaign_id             <- 'Campagne'",
        "phone columns (FR, sent in E.164): 'Téléphone client'",
        "dayfirst: true (a date starts with a day above 12: '25/11/2025 14:30')",
        "time zone: Europe/Paris (French headers: times without an offset are read as Paris time)",
        "metadata (every other column): 'Téléphone client', 'N° client', 'Durée'",
    ]


def test_the_xlsx_title_rows_are_found_and_written_as_header_row(tmp_path):
    manifest, _ = xlsx_with_title(tmp_path)
    guess = guess_config(manifest)
    assert (guess.sheet, guess.header_row, guess.title_rows) == ("Appels", 3, True)
    text = guess.yaml_text()
    assert '  sheet: Appels' in text and "  header_row: 3  # the rows above it are titles" in text


def test_init_never_overwrites_without_force(tmp_path):
    manifest, _ = english(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text("# mine\n", encoding="utf-8")
    r = run_cli("init", manifest)
    assert r.code == 2 and "already exists; add --force" in r.err
    assert config.read_text(encoding="utf-8") == "# mine\n"
    r = run_cli("init", manifest, "--force")
    assert r.code == 0 and "columns:" in config.read_text(encoding="utf-8")
    other = tmp_path / "cfg" / "guessed.yaml"
    r = run_cli("init", manifest, "--output", other)
    assert r.code == 0 and other.exists()
    r = run_cli("init", manifest, "--output", manifest, "--force")
    assert r.code == 2 and "would replace a manifest" in r.err


def test_init_says_what_it_could_not_guess(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("Quand,Qui\n25/11/2025 10:00,x\n", encoding="utf-8")
    r = run_cli("init", path)
    assert r.code == 1  # written, but a required field is missing
    assert "could not guess: no column looks like the recording's file; set columns.file_path" in r.out
    assert "could not guess: no campaign column" in r.out
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    assert "# file_path: ???" in text and "campaign_id: null" in text


def test_validate_names_the_closest_header_of_a_missing_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(f"file_path,Email agent,conversation_timestamp,campaign_id\na.wav,a@b.fr,1750000000,{CAMPAIGN}\n",
                    encoding="utf-8")
    r = run_cli("validate", path)
    assert r.code == 2
    assert ("no column for agent_email; closest: 'Email agent' -> set columns.agent_email: 'Email agent' "
            "(or run allobrain-import init)") in r.err
    assert "no column for file_path" not in r.err
