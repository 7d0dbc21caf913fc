"""Loading manifests: encodings, delimiters, XLSX, headers, row numbers, hostile files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import openpyxl
import pytest

from importer.config import Config, ManifestConfig
from importer.errors import ManifestError
from importer.manifest import LoadedManifest, Problem, load_manifest

HEADER = ["file_path", "agent_email", "agent_name", "conversation_timestamp", "campaign_id", "site"]
ROWS = [
    ["audio/a.wav", "helene@x.fr", "Hélène Lefèvre", "25/11/2025 14:30", "c1", "Besançon"],
    ["audio/b.wav", "francois@x.fr", "François Côté", "1764077400", "c1", "Orléans"],
    ["audio/c.wav", "zoe@x.fr", "Zoé Müller", "2025-11-25T14:30:00+01:00", "c2", "Nîmes"],
]
CFG = Config()


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def csv_text(rows: list[list[str]], delimiter: str = ",", newline: str = "\n") -> str:
    return "".join(delimiter.join(r) + newline for r in rows)


def cells(loaded: LoadedManifest) -> list[list[str]]:
    return loaded.frame.astype(object).values.tolist()


# --- encodings x delimiters -----------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize(
    ("encoding", "detected"),
    [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"), ("cp1252", "cp1252"), ("latin-1", "cp1252")],
)
def test_every_encoding_and_delimiter_gives_the_same_rows(tmp_path, delimiter, encoding, detected):
    path = write(tmp_path / "m.csv", csv_text([HEADER, *ROWS], delimiter, "\r\n"), encoding)
    loaded = load_manifest(path, CFG)
    assert cells(loaded) == ROWS
    assert loaded.headers == tuple(HEADER)
    assert loaded.delimiter == delimiter
    # latin-1 and cp1252 write these letters with the same bytes: both read as cp1252, identically.
    assert loaded.encoding == detected
    assert loaded.line_numbers.tolist() == [2, 3, 4]
    assert not loaded.is_results and loaded.import_columns is None


def test_a_byte_undefined_in_cp1252_means_latin1(tmp_path):
    text = csv_text([HEADER, ["a.wav", "a@x.fr", "x\x8dy", "1764077400", "c1", ""]])
    loaded = load_manifest(write(tmp_path / "m.csv", text, "latin-1"), CFG)
    assert loaded.encoding == "latin-1"
    assert cells(loaded)[0][2] == "x\x8dy"


def test_cp1252_only_characters(tmp_path):
    text = csv_text([HEADER, ["a.wav", "a@x.fr", "l’agent – 5 €", "1764077400", "c1", ""]], ";")
    loaded = load_manifest(write(tmp_path / "m.csv", text, "cp1252"), CFG)
    assert loaded.encoding == "cp1252"
    assert cells(loaded)[0][2] == "l’agent – 5 €"


def test_bom_is_not_part_of_the_first_header(tmp_path):
    loaded = load_manifest(write(tmp_path / "m.csv", csv_text([HEADER, *ROWS]), "utf-8-sig"), CFG)
    assert loaded.headers[0] == "file_path"
    assert loaded.find_column("FILE_PATH") == "file_path"


def test_utf16_with_bom_is_decoded(tmp_path):
    # Excel's "Unicode text" export: UTF-16 with a BOM, tab-delimited.
    loaded = load_manifest(write(tmp_path / "m.txt", csv_text([HEADER, *ROWS], "\t", "\r\n"), "utf-16"), CFG)
    assert loaded.encoding == "utf-16"
    assert loaded.delimiter == "\t"
    assert cells(loaded) == ROWS


def test_utf16_without_bom_is_refused_clearly(tmp_path):
    path = write(tmp_path / "m.csv", csv_text([HEADER, *ROWS]), "utf-16-le")
    with pytest.raises(ManifestError, match="binary data.*UTF-16"):
        load_manifest(path, CFG)


def test_mixed_encodings_are_refused_naming_the_option(tmp_path):
    head = csv_text([HEADER, ROWS[0]]).encode("utf-8")
    tail = csv_text([ROWS[1]]).encode("cp1252")
    path = tmp_path / "m.csv"
    path.write_bytes(head + tail)
    with pytest.raises(ManifestError, match="mixed encodings.*manifest.encoding"):
        load_manifest(path, CFG)


def test_forced_encoding_is_used(tmp_path):
    path = write(tmp_path / "m.csv", csv_text([HEADER, *ROWS]), "cp1252")
    loaded = load_manifest(path, Config(manifest=ManifestConfig(encoding="latin-1")))
    assert loaded.encoding == "latin-1"
    assert cells(loaded) == ROWS


def test_forced_encoding_that_does_not_fit_names_the_option(tmp_path):
    path = write(tmp_path / "m.csv", csv_text([HEADER, *ROWS]), "cp1252")
    with pytest.raises(ManifestError, match=r"cannot be read as utf-8 .*line 2.*manifest\.encoding"):
        load_manifest(path, Config(manifest=ManifestConfig(encoding="utf-8")))


def test_forced_utf8_still_strips_a_bom(tmp_path):
    path = write(tmp_path / "m.csv", csv_text([HEADER, *ROWS]), "utf-8-sig")
    loaded = load_manifest(path, Config(manifest=ManifestConfig(encoding="utf-8")))
    assert loaded.headers[0] == "file_path"


# --- delimiters -----------------------------------------------------------------------------------


def test_semicolon_file_with_decimal_commas(tmp_path):
    rows = [[*HEADER, "score"], [*ROWS[0], "12,5"]]
    loaded = load_manifest(write(tmp_path / "m.csv", csv_text(rows, ";")), CFG)
    assert loaded.delimiter == ";"
    assert cells(loaded)[0][-1] == "12,5"


def test_quoted_delimiters_do_not_count(tmp_path):
    text = 'file_path,agent_email,"name; with semicolon",conversation_timestamp,campaign_id\n' + (
        'a.wav,a@x.fr,"Dupont; Jean",1764077400,c1\n'
    )
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert loaded.delimiter == ","
    assert cells(loaded)[0][2] == "Dupont; Jean"


def test_header_with_two_candidates_settled_by_the_rows(tmp_path):
    # A ';' file whose header holds an unquoted comma: only ';' gives every row the header's width.
    text = "file_path;agent_email;nom, prénom;conversation_timestamp;campaign_id\na.wav;a@x.fr;Jean;1764077400;c1\n"
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert loaded.delimiter == ";"
    assert loaded.headers[2] == "nom, prénom"


def test_ambiguous_delimiter_is_refused_naming_the_option(tmp_path):
    text = "file_path,agent_email;conversation_timestamp,campaign_id\na,b;c,d\n"
    with pytest.raises(ManifestError, match=r"cannot tell the delimiter.*manifest\.delimiter"):
        load_manifest(write(tmp_path / "m.csv", text), CFG)


def test_forced_delimiter_settles_an_ambiguous_file(tmp_path):
    path = write(
        tmp_path / "m.csv",
        "file_path,agent_email,x;y,conversation_timestamp,campaign_id\na.wav,a@x.fr,1;2,1,c1\n",
    )
    with pytest.raises(ManifestError, match="cannot tell the delimiter"):
        load_manifest(path, CFG)
    loaded = load_manifest(path, Config(manifest=ManifestConfig(delimiter=",")))
    assert loaded.headers == ("file_path", "agent_email", "x;y", "conversation_timestamp", "campaign_id")


def test_mixed_delimiters_are_refused_naming_the_option(tmp_path):
    text = csv_text([HEADER, ROWS[0]], ";") + csv_text([ROWS[1]], ",")
    with pytest.raises(ManifestError, match=r"mixed delimiters.*manifest\.delimiter"):
        load_manifest(write(tmp_path / "m.csv", text), CFG)


def test_a_row_with_too_many_cells_is_refused_with_its_row(tmp_path):
    text = csv_text([HEADER, ROWS[0], ROWS[1] + ["extra"], ROWS[2]])
    with pytest.raises(ManifestError, match=r"header has 6 cells but row 3 has 7 cells"):
        load_manifest(write(tmp_path / "m.csv", text), CFG)


def test_spare_trailing_delimiters_are_tolerated(tmp_path):
    text = ",".join(HEADER) + "\n" + "".join(",".join(r) + ",,\n" for r in ROWS)
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded) == ROWS
    assert loaded.headers == tuple(HEADER)


def test_short_rows_are_padded(tmp_path):
    # Old Excel versions leave out trailing empty cells.
    text = csv_text([HEADER, ROWS[0][:5], ROWS[1]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded)[0] == [*ROWS[0][:5], ""]
    assert loaded.warnings == ()


# --- row numbers ----------------------------------------------------------------------------------


def test_blank_lines_are_skipped_and_rows_keep_their_numbers(tmp_path):
    text = csv_text([HEADER, ROWS[0]]) + "\n,,,,,\n   \n" + csv_text([ROWS[1]]) + "\n" + csv_text([ROWS[2]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded) == ROWS
    assert loaded.line_numbers.tolist() == [2, 6, 8]


def test_blank_lines_before_the_header_count(tmp_path):
    loaded = load_manifest(write(tmp_path / "m.csv", "\n;;\n" + csv_text([HEADER, *ROWS])), CFG)
    assert loaded.header_row == 3
    assert loaded.line_numbers.tolist() == [4, 5, 6]


def test_a_multiline_cell_is_one_row_as_in_excel(tmp_path):
    text = csv_text([HEADER]) + 'a.wav,a@x.fr,"Jean\nDupont",1764077400,c1,x\n' + csv_text([ROWS[1]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded)[0][2] == "Jean\nDupont"
    assert loaded.line_numbers.tolist() == [2, 3]


def test_mixed_line_endings(tmp_path):
    text = ",".join(HEADER) + "\r\n" + ",".join(ROWS[0]) + "\n" + ",".join(ROWS[1]) + "\r" + ",".join(ROWS[2])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded) == ROWS
    assert loaded.line_numbers.tolist() == [2, 3, 4]


# --- headers --------------------------------------------------------------------------------------


def test_headers_match_ignoring_case_and_spaces_and_stay_verbatim(tmp_path):
    header = [" File_Path ", "AGENT_EMAIL", "Conversation_Timestamp", "campaign_id "]
    loaded = load_manifest(write(tmp_path / "m.csv", csv_text([header, ["a.wav", "a@x.fr", "1", "c"]])), CFG)
    assert loaded.headers == tuple(header)
    assert loaded.find_column("file_path") == " File_Path "
    assert loaded.find_column(" agent_email") == "AGENT_EMAIL"


def test_duplicate_headers_are_refused(tmp_path):
    header = [*HEADER, " Agent_Email"]
    with pytest.raises(ManifestError, match=r"duplicate column headers.*'Agent_Email' \(columns B and G\)"):
        load_manifest(write(tmp_path / "m.csv", csv_text([header, [*ROWS[0], "x"]])), CFG)


def test_missing_columns_list_the_headers_found_and_the_config_keys(tmp_path):
    path = write(tmp_path / "m.csv", csv_text([["fichier", "email", "date"], ["a", "b", "c"]]))
    with pytest.raises(ManifestError) as info:
        load_manifest(path, CFG)
    message = str(info.value)
    assert "missing required column(s): 'file_path'" in message
    for key in (
        "columns.file_path",
        "columns.agent_email",
        "columns.conversation_timestamp",
        "columns.campaign_id",
    ):
        assert key in message
    assert "Headers found: 'fichier', 'email', 'date'" in message


def test_renamed_columns_and_a_default_campaign(tmp_path):
    cfg = Config(campaign_id="c9").with_overrides(
        columns=Config().columns.__class__(
            file_path="fichier", agent_email="email_agent", conversation_timestamp="date_appel"
        )
    )
    path = write(tmp_path / "m.csv", csv_text([["Fichier", "EMAIL_AGENT", "date_appel"], ["a", "b", "c"]]))
    assert load_manifest(path, cfg).headers == ("Fichier", "EMAIL_AGENT", "date_appel")


def test_a_single_column_header_hints_at_the_delimiter(tmp_path):
    path = write(tmp_path / "m.csv", "file_path|agent_email|conversation_timestamp\na|b|c\n")
    with pytest.raises(ManifestError, match=r"single column: set manifest\.delimiter"):
        load_manifest(path, CFG)


def test_a_column_with_values_but_no_header_is_refused(tmp_path):
    text = csv_text([[*HEADER, ""], [*ROWS[0], "orphan"]])
    with pytest.raises(ManifestError, match=r"column G has values but no header \(first at row 2\)"):
        load_manifest(write(tmp_path / "m.csv", text), CFG)


def test_import_columns_are_kept_aside(tmp_path):
    header = [*HEADER, "import_row", "Import_Status", "import_call_id"]
    text = csv_text([header, [*ROWS[0], "2", "uploaded", "abc"]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert loaded.headers == tuple(HEADER)
    assert loaded.is_results
    assert loaded.import_columns is not None
    assert list(loaded.import_columns.columns) == ["import_row", "import_status", "import_call_id"]
    assert loaded.import_columns["import_status"].tolist() == ["uploaded"]


# --- XLSX -----------------------------------------------------------------------------------------


def make_xlsx(path: Path) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Notes"
    ws.append(["nothing to see"])
    calls = wb.create_sheet("Appels")
    calls.append([*HEADER, "client_phone", "code"])
    calls.append(["a.wav", "a@x.fr", "Jean", 1764077400, "c1", "Lyon", 33612345678, "0042"])
    calls.append([])  # an empty row: skipped, numbering kept
    calls.append(
        ["b.wav", "b@x.fr", "Marie", dt.datetime(2025, 11, 25, 14, 30), "c1", 2.5, "0612345678", 7.0]
    )
    wb.save(path)
    return path


def test_xlsx_named_sheet_every_cell_as_text(tmp_path):
    path = make_xlsx(tmp_path / "m.xlsx")
    loaded = load_manifest(path, Config(manifest=ManifestConfig(sheet="Appels")))
    assert loaded.encoding == "xlsx" and loaded.delimiter == ","
    assert loaded.line_numbers.tolist() == [2, 4]
    assert cells(loaded) == [
        ["a.wav", "a@x.fr", "Jean", "1764077400", "c1", "Lyon", "33612345678", "0042"],
        ["b.wav", "b@x.fr", "Marie", "2025-11-25T14:30:00", "c1", "2.5", "0612345678", "7"],
    ]


def test_xlsx_sheet_name_ignores_case(tmp_path):
    loaded = load_manifest(make_xlsx(tmp_path / "m.xlsx"), Config(manifest=ManifestConfig(sheet="appels")))
    assert loaded.n_rows == 2


def test_xlsx_first_sheet_by_default(tmp_path):
    with pytest.raises(ManifestError, match=r"Headers found: 'nothing to see'"):
        load_manifest(make_xlsx(tmp_path / "m.xlsx"), CFG)


def test_xlsx_unknown_sheet_lists_the_sheets(tmp_path):
    with pytest.raises(ManifestError, match=r"no sheet named 'Calls' \(manifest\.sheet\).*'Notes', 'Appels'"):
        load_manifest(make_xlsx(tmp_path / "m.xlsx"), Config(manifest=ManifestConfig(sheet="Calls")))


def test_a_damaged_xlsx_is_a_manifest_error(tmp_path):
    path = write(tmp_path / "m.xlsx", "not a zip")
    with pytest.raises(ManifestError, match="cannot read m.xlsx as an Excel workbook"):
        load_manifest(path, CFG)


def test_an_xlsx_named_csv_is_refused_with_advice(tmp_path):
    path = make_xlsx(tmp_path / "m.xlsx").rename(tmp_path / "m.csv")
    with pytest.raises(ManifestError, match="give it the .xlsx extension"):
        load_manifest(path, CFG)


# --- hostile input --------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(write(tmp_path / "m.csv", ""), CFG)


@pytest.mark.parametrize("text", ["\n\n", "\ufeff", "  \r\n ; ;\n"])
def test_blank_files_are_empty(tmp_path, text):
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(write(tmp_path / "m.csv", text), CFG)


def test_header_only_is_valid_with_no_rows(tmp_path):
    loaded = load_manifest(write(tmp_path / "m.csv", ",".join(HEADER)), CFG)
    assert loaded.n_rows == 0
    assert loaded.headers == tuple(HEADER)


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv", CFG)


def test_nul_bytes_are_removed_with_a_warning(tmp_path):
    text = csv_text([HEADER, ["a.wav", "a@x.fr", "Je\x00an", "1764077400", "c1", ""], ROWS[1]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded)[0][2] == "Jean"
    assert [str(w) for w in loaded.warnings] == [
        "row 2, agent_name: NUL characters removed from this cell (the file may be damaged)"
    ]


def test_a_10_mb_cell(tmp_path):
    big = "x" * (10 * 1024 * 1024)
    text = csv_text([[*HEADER, "notes"], [*ROWS[0], f'"{big}"'], [*ROWS[1], "short"]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert len(cells(loaded)[0][-1]) == len(big)
    assert loaded.line_numbers.tolist() == [2, 3]


def test_ten_thousand_columns(tmp_path):
    extra = [f"meta{i}" for i in range(10_000)]
    text = csv_text([[*HEADER, *extra], [*ROWS[0], *(str(i) for i in range(10_000))]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert len(loaded.headers) == len(HEADER) + 10_000
    assert cells(loaded)[0][-1] == "9999"


def test_torn_last_line_of_a_results_csv_is_loaded_with_a_warning(tmp_path):
    header = [*HEADER, "import_row", "import_status", "import_call_id"]
    text = csv_text([header, [*ROWS[0], "2", "uploaded", "id1"]]) + ",".join([*ROWS[1][:4]])
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert loaded.is_results
    assert cells(loaded)[1] == [*ROWS[1][:4], "", ""]
    assert [str(w) for w in loaded.warnings] == [
        "row 3, campaign_id: the last line stops before this column and has no line end: the file was probably "
        "cut off while being written; the row is read as far as it goes"
    ]
    assert loaded.warnings[0].severity == "warning"


def test_torn_last_line_inside_a_quoted_cell(tmp_path):
    text = csv_text([HEADER, ROWS[0]]) + 'b.wav,b@x.fr,"Marie Cu'
    loaded = load_manifest(write(tmp_path / "m.csv", text), CFG)
    assert cells(loaded)[1][:3] == ["b.wav", "b@x.fr", "Marie Cu"]
    assert [(w.row, w.column) for w in loaded.warnings] == [(3, "conversation_timestamp")]


def test_an_unclosed_quote_in_the_middle_is_refused(tmp_path):
    text = csv_text([HEADER]) + 'a.wav,a@x.fr,"Jean,1764077400,c1,x\n' + csv_text(ROWS)
    with pytest.raises(ManifestError, match=r"row 2: a quoted cell is opened but never closed"):
        load_manifest(write(tmp_path / "m.csv", text), CFG)


def test_old_xls_is_refused(tmp_path):
    with pytest.raises(ManifestError, match=r"\.xls format is not supported"):
        load_manifest(write(tmp_path / "m.xls", "x"), CFG)


def test_problem_text():
    assert str(Problem(7, "agent_email", "missing (required)")) == "row 7, agent_email: missing (required)"
