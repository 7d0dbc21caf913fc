"""Validation rules, with their exact messages, on real files on disk."""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_mp3, make_wav

from importer.config import Config, ManifestConfig, MetadataConfig, UploadConfig, load_config
from importer.errors import ManifestError
from importer.manifest import CallRow, Problem, ValidatedManifest, load_manifest, validate_manifest
from importer.manifest.files import check_file

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
T = 1764077400
HEADER = ["file_path", "agent_email", "agent_name", "conversation_timestamp", "campaign_id"]
ROOT = Path(__file__).resolve().parents[2]


def write_csv(
    path: Path, rows: list[list[str]], header: list[str] | None = None, delimiter: str = ","
) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=delimiter)
        writer.writerow(header or HEADER)
        writer.writerows(rows)
    return path


def validate(
    tmp_path: Path,
    rows: list[list[str]],
    header: list[str] | None = None,
    cfg: Config | None = None,
    durations: bool = False,
) -> ValidatedManifest:
    cfg = cfg or Config()
    loaded = load_manifest(write_csv(tmp_path / "manifest.csv", rows, header), cfg)
    return validate_manifest(loaded, cfg, now=NOW, with_durations=durations)


def messages(vm: ValidatedManifest) -> list[str]:
    return [str(p) for p in vm.problems]


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    make_wav(tmp_path / "audio" / "a.wav", seconds=1.5)
    make_wav(tmp_path / "audio" / "b.wav", seconds=2.0, seed=3)
    make_mp3(tmp_path / "audio" / "c.mp3")
    return tmp_path / "audio"


def row(file: str = "audio/a.wav", email: str = "jean.dupont@x.fr", name: str = "Jean Dupont",
        ts: str = str(T), campaign: str = "665dc5c57275b74ce35c0c01") -> list[str]:  # fmt: skip
    return [file, email, name, ts, campaign]


# --- a clean manifest -----------------------------------------------------------------------------


def test_valid_rows_become_calls(tmp_path, audio):
    vm = validate(
        tmp_path, [row(), row("audio/b.wav", " Marie@X.fr ", "", "2025-11-25T14:31:00+01:00", "665dc5c57275b74ce35c0c02")]
    )
    assert vm.problems == []
    assert (vm.n_rows, vm.n_valid, vm.n_invalid, vm.n_warnings) == (2, 2, 0, 0)
    first, second = vm.calls
    assert first == CallRow(
        index=0,
        row=2,
        file_path=audio / "a.wav",
        file_name="a.wav",
        file_size=(audio / "a.wav").stat().st_size,
        file_mtime_ns=(audio / "a.wav").stat().st_mtime_ns,
        agent_email="jean.dupont@x.fr",
        agent_name="Jean Dupont",
        timestamp=T,
        campaign_id="665dc5c57275b74ce35c0c01",
        metadata=(),
        prior_status=None,
        duration=None,
    )
    assert (second.agent_email, second.agent_name, second.timestamp, second.campaign_id) == (
        "marie@x.fr",
        "Marie",
        T + 60,
        "665dc5c57275b74ce35c0c02",
    )
    assert vm.agents == {"jean.dupont@x.fr": "Jean Dupont", "marie@x.fr": "Marie"}
    assert vm.total_bytes == first.file_size + second.file_size
    assert vm.total_duration is None


def test_durations_when_asked(tmp_path, audio):
    vm = validate(tmp_path, [row(), row("audio/c.mp3", ts=str(T + 1))], durations=True)
    assert [round(c.duration or 0, 2) for c in vm.calls] == [1.5, 1.04]
    assert vm.total_duration == pytest.approx(1.5 + 40 * 1152 / 44100, rel=0.01)


def test_first_and_last_name_columns(tmp_path, audio):
    header = [
        "file_path",
        "agent_email",
        "agent_first_name",
        "agent_last_name",
        "conversation_timestamp",
        "campaign_id",
    ]
    vm = validate(tmp_path, [["audio/a.wav", "j@x.fr", " Jean ", "Dupont", str(T), "665dc5c57275b74ce35c0c01"]], header)
    assert vm.agents == {"j@x.fr": "Jean Dupont"}


def test_name_derived_from_the_email(tmp_path, audio):
    vm = validate(tmp_path, [row(name="", email="jean.dupont@x.fr")], HEADER)
    assert vm.calls[0].agent_name == "Jean Dupont"


# --- required fields ------------------------------------------------------------------------------


def test_required_fields_missing(tmp_path, audio):
    vm = validate(tmp_path, [row(file=" "), row(email=""), row(ts=""), row(campaign="")])
    assert messages(vm) == [
        "row 2, file_path: missing (required)",
        "row 3, agent_email: missing (required)",
        "row 4, conversation_timestamp: missing (required)",
        "row 5, campaign_id: missing (required): fill the cell, or set campaign_id in config.yaml (or --campaign-id)",
    ]
    assert vm.calls == [] and vm.n_invalid == 4
    assert vm.invalid[0] == "file_path: missing (required)"


def test_default_campaign_fills_empty_cells_only(tmp_path, audio):
    vm = validate(
        tmp_path, [row(campaign=""), row(campaign="665dc5c57275b74ce35c0c07", ts=str(T + 1))], cfg=Config(campaign_id="665dc5c57275b74ce35c0c09")
    )
    assert [c.campaign_id for c in vm.calls] == ["665dc5c57275b74ce35c0c09", "665dc5c57275b74ce35c0c07"]


def test_no_campaign_column_with_a_default(tmp_path, audio):
    header = HEADER[:4]
    vm = validate(tmp_path, [row()[:4]], header, Config(campaign_id="665dc5c57275b74ce35c0c09"))
    assert vm.calls[0].campaign_id == "665dc5c57275b74ce35c0c09"


def test_columns_use_the_manifest_headers_in_messages(tmp_path, audio):
    cfg = Config().with_overrides(
        columns=replace(Config().columns, file_path="Fichier", agent_email="Email Agent")
    )
    header = [" FICHIER ", "email agent", "agent_name", "conversation_timestamp", "campaign_id"]
    vm = validate(tmp_path, [row(file="", email="bad")], header, cfg)
    assert messages(vm) == [
        "row 2, FICHIER: missing (required)",
        "row 2, email agent: not a valid email address: 'bad' (An email address must have an @-sign)",
    ]


# --- files ----------------------------------------------------------------------------------------


def test_file_rules(tmp_path, audio):
    (audio / "empty.wav").write_bytes(b"")
    (audio / "notes.txt").write_text("these are not the calls you are looking for\n")
    (audio / "scan.pdf").write_bytes(b"%PDF-1.4\n" + bytes(100))
    (audio / "blob.bin").write_bytes(bytes(range(256)))
    vm = validate(
        tmp_path,
        [
            row("audio/missing.wav", ts=str(T + 1)),
            row("audio", ts=str(T + 2)),
            row("audio/empty.wav", ts=str(T + 3)),
            row("audio/notes.txt", ts=str(T + 4)),
            row("audio/scan.pdf", ts=str(T + 5)),
            row("audio/blob.bin", ts=str(T + 6)),
            row(str(audio / "b.wav"), ts=str(T + 7)),  # absolute path
            row("./audio/../audio/c.mp3", ts=str(T + 8)),
        ],
    )
    assert messages(vm) == [
        f"row 2, file_path: file not found: {audio / 'missing.wav'}",
        f"row 3, file_path: not a regular file (a folder): {audio}",
        f"row 4, file_path: file is empty: {audio / 'empty.wav'}",
        f"row 5, file_path: not an audio file (content looks like text): {audio / 'notes.txt'}",
        f"row 6, file_path: not an audio file (content looks like PDF): {audio / 'scan.pdf'}",
        f"row 7, file_path: not an audio file (unrecognised content): {audio / 'blob.bin'}",
    ]
    assert [c.file_path for c in vm.calls] == [audio / "b.wav", audio / "c.mp3"]
    assert vm.calls[1].file_name == "c.mp3"


def test_file_over_the_size_limit(tmp_path, audio):
    make_wav(audio / "long.wav", seconds=80)  # about 1.2 MB
    cfg = Config(upload=UploadConfig(max_file_mb=1))
    vm = validate(tmp_path, [row("audio/long.wav"), row(ts=str(T + 1))], cfg=cfg)
    assert messages(vm) == [
        f"row 2, file_path: file is too large: 1.2 MB, over upload.max_file_mb (1 MB): {audio / 'long.wav'}"
    ]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_unreadable_file(tmp_path, audio):
    locked = make_wav(audio / "locked.wav")
    locked.chmod(0)
    try:
        if os.geteuid() != 0:
            vm = validate(tmp_path, [row("audio/locked.wav")])
            assert messages(vm) == [f"row 2, file_path: cannot read the file (permission denied): {locked}"]
        else:
            # root reads everything: check the file with the effective uid of "nobody" for a moment.
            folder = Path(tempfile.mkdtemp(prefix="unreadable-"))
            try:
                folder.chmod(0o755)
                target = folder / "locked.wav"
                target.write_bytes(locked.read_bytes())
                target.chmod(0)
                os.seteuid(65534)
                try:
                    info = check_file(str(target), 1e9)
                finally:
                    os.seteuid(0)
                assert info.error == f"cannot read the file (permission denied): {target}"
            finally:
                shutil.rmtree(folder)
    finally:
        locked.chmod(0o644)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_not_a_regular_file_and_does_not_hang(tmp_path, audio):
    os.mkfifo(audio / "pipe.wav")
    vm = validate(tmp_path, [row("audio/pipe.wav")])
    assert messages(vm) == [f"row 2, file_path: not a regular file: {audio / 'pipe.wav'}"]


def test_windows_separators_are_understood(tmp_path, audio):
    vm = validate(tmp_path, [row("audio\\a.wav")])
    assert vm.calls[0].file_path == audio / "a.wav"


def test_a_shared_file_is_checked_once_and_reported_on_every_row(tmp_path, audio):
    rows = [row("audio/missing.wav", ts=str(T + i)) for i in range(3)] + [
        row(ts=str(T + 9 + i)) for i in range(3)
    ]
    vm = validate(tmp_path, rows)
    assert messages(vm) == [f"row {r}, file_path: file not found: {audio / 'missing.wav'}" for r in (2, 3, 4)]
    assert len({id(c.file_path) for c in vm.calls}) == 1  # one Path object for the shared file


# --- emails, timestamps, duplicates ---------------------------------------------------------------


def test_email_and_timestamp_errors(tmp_path, audio):
    vm = validate(tmp_path, [row(email="jean@", ts="2030-01-01 10:00"), row(ts="31/02/2025 10:00")])
    assert messages(vm) == [
        "row 2, agent_email: not a valid email address: 'jean@' (There must be something after the @-sign)",
        "row 2, conversation_timestamp: in the future: '2030-01-01 10:00' is 2030-01-01T10:00:00Z (check the "
        "date, and manifest.timezone)",
        "row 3, conversation_timestamp: not a valid date/time: '31/02/2025 10:00'",
    ]
    assert vm.invalid[0] == (
        "agent_email: not a valid email address: 'jean@' (There must be something after the @-sign); "
        "conversation_timestamp: in the future: '2030-01-01 10:00' is 2030-01-01T10:00:00Z (check the date, and "
        "manifest.timezone)"
    )


def test_timezone_and_dayfirst_from_config(tmp_path, audio):
    cfg = Config(manifest=ManifestConfig(timezone="Europe/Paris", dayfirst=False))
    vm = validate(tmp_path, [row(ts="11/25/2025 14:30"), row(ts="2026-03-29 02:30")], cfg=cfg)
    assert vm.calls[0].timestamp == T
    assert messages(vm) == [
        "row 3, conversation_timestamp: '2026-03-29 02:30' does not exist in Europe/Paris: the clocks skip that "
        "hour when summer time starts; check the time"
    ]


def test_duplicates_name_the_first_row(tmp_path, audio):
    rows = [
        row(),
        row(ts="2025-11-25T14:30:00+01:00"),  # same second, other notation
        row(email="JEAN.DUPONT@x.fr "),  # same agent after normalisation
        row("./audio/a.wav"),  # same file after resolution
        row(campaign="665dc5c57275b74ce35c0c02"),  # other campaign: not a duplicate
        row("audio/b.wav"),  # other file
        row(ts=str(T + 1)),  # other second
    ]
    vm = validate(tmp_path, rows)
    assert messages(vm) == [
        "row 3, file_path: duplicate of row 2",
        "row 4, file_path: duplicate of row 2",
        "row 5, file_path: duplicate of row 2",
    ]
    assert [c.row for c in vm.calls] == [2, 6, 7, 8]


# --- metadata -------------------------------------------------------------------------------------


def test_metadata_columns(tmp_path, audio):
    header = [*HEADER, "client_phone", "Site", "notes", "secret", "import_note"]
    cfg = Config(
        metadata=MetadataConfig(
            exclude=("SECRET",), rename=(("site", "location"),), phone_columns=("client_phone",)
        )
    )
    rows = [
        [*row(), "06 12 34 56 78", " Lyon ", "", "x", "y"],
        [*row(ts=str(T + 1)), "", "Paris", "rappeler", "x", "y"],
    ]
    vm = validate(tmp_path, rows, header, cfg)
    assert vm.problems == []
    assert vm.calls[0].metadata == (("client_phone", "+33612345678"), ("location", "Lyon"))
    assert vm.calls[1].metadata == (("location", "Paris"), ("notes", "rappeler"))


def test_metadata_include(tmp_path, audio):
    header = [*HEADER, "a", "b", "c"]
    cfg = Config(metadata=MetadataConfig(include=("B", "c", "zz")))
    vm = validate(tmp_path, [[*row(), "1", "2", "3"]], header, cfg)
    assert vm.calls[0].metadata == (("b", "2"), ("c", "3"))
    assert messages(vm) == ["row 1, zz: metadata.include names this column, but the manifest has none"]
    assert vm.problems[0].severity == "warning"


def test_phone_errors_and_a_missing_phone_column(tmp_path, audio):
    header = [*HEADER, "tel"]
    cfg = Config(metadata=MetadataConfig(phone_columns=("tel", "mobile")))
    rows = [[*row(), "3.3612E+10"], [*row(ts=str(T + 1)), "612345678"], [*row(ts=str(T + 2)), "+33612345678"]]
    vm = validate(tmp_path, rows, header, cfg)
    assert messages(vm) == [
        "row 1, mobile: metadata.phone_columns names this column, but the manifest has none",
        "row 2, tel: damaged by Excel (scientific notation): the last digits are lost; format the column as text "
        "in Excel and type the numbers again",
        "row 3, tel: lost its leading zero (612345678 should be 0612345678): format the column as text in Excel",
    ]
    assert [c.row for c in vm.calls] == [4]


def test_rename_collision_is_refused(tmp_path, audio):
    cfg = Config(metadata=MetadataConfig(rename=(("a", "b"),)))
    with pytest.raises(ManifestError, match="would both send the metadata key 'b'"):
        validate(tmp_path, [[*row(), "1", "2"]], [*HEADER, "a", "b"], cfg)


def test_two_fields_on_one_column_is_refused(tmp_path, audio):
    cfg = Config().with_overrides(columns=replace(Config().columns, agent_name="agent_email"))
    with pytest.raises(ManifestError, match="columns.agent_email and columns.agent_name both name"):
        validate(tmp_path, [row()], cfg=cfg)


# --- warnings -------------------------------------------------------------------------------------


def test_warnings_do_not_block(tmp_path, audio):
    make_wav(audio / "short.wav", seconds=0.4)
    header = [*HEADER, "notes"]
    rows = [
        [*row(), ""],
        [*row(name="J. Dupont", ts=str(T + 1)), ""],
        [*row(name="jean  dupont", ts=str(T + 2)), ""],  # the same name, spelled with other case/spaces
        [*row("audio/short.wav", ts=str(T + 3)), "x" * 1001],
    ]
    vm = validate(tmp_path, rows, header, durations=True)
    assert messages(vm) == [
        "row 3, agent_name: agent jean.dupont@x.fr is already named 'Jean Dupont' on row 2; 'J. Dupont' is not "
        "used (the first name wins)",
        "row 5, file_path: audio is only 0.40 s long",
        "row 5, notes: value is 1,001 characters long (over 1,000); it is sent anyway",
    ]
    assert all(p.severity == "warning" for p in vm.problems)
    assert vm.n_valid == 4 and vm.n_warnings == 3 and vm.n_errors == 0
    assert {c.agent_name for c in vm.calls} == {"Jean Dupont"}


def test_loader_warnings_are_included(tmp_path, audio):
    path = tmp_path / "m.csv"
    path.write_text(",".join(HEADER) + "\n" + ",".join(row()) + "\n" + "audio/b.wav,j@x.fr")
    loaded = load_manifest(path, Config())
    vm = validate_manifest(loaded, Config(), now=NOW)
    assert [p.severity for p in vm.problems] == ["warning", "error", "error"]
    assert vm.problems[0].row == 3


def test_problems_are_sorted_by_row_then_column(tmp_path, audio):
    vm = validate(tmp_path, [row(ts="x", email="y", file=""), row(campaign="")])
    assert [(p.row, p.column) for p in vm.problems] == [
        (2, "file_path"),
        (2, "agent_email"),
        (2, "conversation_timestamp"),
        (3, "campaign_id"),
    ]
    assert isinstance(vm.problems[0], Problem)


# --- reruns ---------------------------------------------------------------------------------------


def test_results_csv_rows_already_uploaded_are_validated_and_carried_only_when_gone(tmp_path, audio):
    """The ledger, not the file, decides: rows a results file calls uploaded are validated (they need their
    key); one whose recording is gone is carried on the file's word, neither invalid nor a problem."""
    header = [*HEADER, "import_row", "import_status", "import_http_status", "import_error", "import_call_id"]
    rows = [
        [*row(), "2", "uploaded", "200", "", "call-1"],
        [*row("audio/gone.wav", ts=str(T + 1)), "3", "already_uploaded", "", "", "'-42"],
        [*row(ts=str(T + 2)), "4", "failed", "422", "bad", ""],
        [*row(ts=str(T + 3)), "5", "unknown", "504", "", ""],
        [*row(ts=str(T + 4), email="bad"), "6", "invalid", "", "agent_email: ...", ""],
        [*row(), "7", "not_attempted", "", "", ""],  # a copy of the uploaded row 2
    ]
    vm = validate(tmp_path, rows, header)
    assert vm.loaded.is_results
    assert vm.carried == {1: ("already_uploaded", "-42")}
    assert [(c.row, c.prior_status, c.prior_call_id) for c in vm.calls] == [
        (2, "uploaded", "call-1"), (4, "failed", None), (5, "unknown", None)]
    assert messages(vm) == [
        "row 6, agent_email: not a valid email address: 'bad' (An email address must have an @-sign)",
        "row 7, file_path: duplicate of row 2",
    ]
    assert (vm.n_rows, vm.n_valid, vm.n_invalid, vm.n_carried) == (6, 3, 2, 1)
    assert vm.loaded.headers == tuple(HEADER)


# --- the shipped examples -------------------------------------------------------------------------


def test_example_manifest_validates_clean():
    cfg = Config(metadata=MetadataConfig(phone_columns=("client_phone",)))
    vm = validate_manifest(load_manifest(ROOT / "manifests" / "example.csv", cfg), cfg, with_durations=True)
    assert vm.problems == []
    assert vm.n_valid == 12 and len(vm.agents) == 4
    assert {c.campaign_id for c in vm.calls} == {"665dc5c57275b74ce35c03ab", "665dc5c57275b74ce35c03ac"}
    assert all(dict(c.metadata)["client_phone"].startswith("+336") for c in vm.calls)
    assert vm.total_duration is not None and vm.n_duration_unknown == 0


def test_french_example_validates_clean_with_its_config():
    cfg = load_config(ROOT / "manifests" / "config.example-fr.yaml")
    loaded = load_manifest(ROOT / "manifests" / "exemple-fr.csv", cfg)
    assert (loaded.encoding, loaded.delimiter) == ("cp1252", ";")
    vm = validate_manifest(loaded, cfg)
    assert vm.problems == []
    assert vm.agents["helene.lefevre@example.com"] == "Hélène Lefèvre"
    first = vm.calls[0]
    assert first.timestamp == 1763973000  # 24/11/2025 09:30 in Paris
    assert first.metadata == (
        ("client_phone", "+33612345601"),
        ("call_direction", "entrant"),
        ("site", "Lyon"),
    )


def test_a_results_csv_in_results_finds_files_beside_the_original_manifest(tmp_path, audio):
    header = [*HEADER, "import_row", "import_status"]
    (tmp_path / "results").mkdir()
    path = write_csv(tmp_path / "results" / "manifest-20261125-101010.csv", [[*row(), "2", "failed"]], header)
    vm = validate_manifest(load_manifest(path, Config()), Config(), now=NOW)
    assert vm.problems == []
    assert vm.calls[0].file_path == audio / "a.wav"
    missing = write_csv(tmp_path / "results" / "again.csv", [[*row("audio/nope.wav"), "2", "failed"]], header)
    vm = validate_manifest(load_manifest(missing, Config()), Config(), now=NOW)
    assert messages(vm) == [f"row 2, file_path: file not found: {audio / 'nope.wav'}"]


def test_a_copy_of_a_recording_in_another_folder_is_a_duplicate(tmp_path):
    """The ledger knows a call by file name and size, not by folder: both copies would be sent."""
    from conftest import make_wav

    from importer.config import Config
    from importer.manifest import load_manifest, validate_manifest

    make_wav(tmp_path / "a" / "x.wav")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.wav").write_bytes((tmp_path / "a" / "x.wav").read_bytes())
    (tmp_path / "m.csv").write_text(
        "file_path,agent_email,conversation_timestamp,campaign_id\n"
        "a/x.wav,a@example.com,1750000000,665dc5c57275b74ce35c0c01\n"
        "b/x.wav,a@example.com,1750000000,665dc5c57275b74ce35c0c01\n"
        "b/x.wav,a@example.com,1750000060,665dc5c57275b74ce35c0c01\n",
        encoding="utf-8",
    )
    vm = validate_manifest(load_manifest(tmp_path / "m.csv", Config()), Config())
    assert [str(p) for p in vm.problems] == ["row 3, file_path: duplicate of row 2"]
    assert [c.row for c in vm.calls] == [2, 4]
