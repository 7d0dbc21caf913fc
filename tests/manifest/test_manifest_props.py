"""Properties: no input crashes the loader or the validator, and what they accept they read faithfully."""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from pathlib import Path

import pandas as pd
import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.config import Config, ManifestConfig, MetadataConfig
from importer.errors import ManifestError
from importer.manifest import load_manifest, validate_manifest
from importer.manifest.phones import normalize_phones
from importer.manifest.timestamps import parse_timestamps

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
REQUIRED = ["file_path", "agent_email", "conversation_timestamp", "campaign_id"]
CFG = Config(metadata=MetadataConfig(phone_columns=("tel",)))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def load_and_validate(data: bytes, suffix: str = ".csv", cfg: Config = CFG) -> None:
    """Either a ManifestError, or a loaded and validated manifest whose parts add up."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{suffix}"
        path.write_bytes(data)
        try:
            loaded = load_manifest(path, cfg)
        except ManifestError as exc:
            assert str(exc)
            return
        try:
            vm = validate_manifest(loaded, cfg, now=NOW, with_durations=True)
        except ManifestError as exc:  # e.g. a metadata key collision: still a clear, whole-file refusal
            assert str(exc)
            return
    lines = loaded.line_numbers.tolist()
    assert len(lines) == loaded.n_rows
    assert lines == sorted(set(lines)) and all(n > loaded.header_row for n in lines)
    assert vm.n_valid + vm.n_invalid + vm.n_carried == vm.n_rows
    assert {c.index for c in vm.calls}.isdisjoint(vm.invalid)
    known_rows = set(lines) | {loaded.header_row}
    assert all(p.row in known_rows for p in vm.problems)
    assert all(str(p).startswith(f"row {p.row}, ") for p in vm.problems)
    assert all(cell == cell for column in loaded.frame for cell in loaded.frame[column])  # no NaN


csv_alphabet = st.sampled_from(list('abc,;\t"\n\r \x00é€0123456789:/-+@._')) | st.characters()
header_line = st.sampled_from(
    [
        "file_path,agent_email,conversation_timestamp,campaign_id,tel\n",
        "file_path;agent_email;conversation_timestamp;campaign_id;tel\r\n",
        "file_path\tagent_email\tconversation_timestamp\tcampaign_id\n",
        "",
    ]
)


@FAST
@given(header=header_line, body=st.text(csv_alphabet, max_size=300))
def test_arbitrary_csv_text_never_crashes(header, body):
    for encoding in ("utf-8", "utf-16"):
        try:
            data = (header + body).encode(encoding)
        except UnicodeEncodeError:  # lone surrogates
            continue
        load_and_validate(data)


@FAST
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data):
    load_and_validate(data)
    load_and_validate(b"file_path,agent_email,conversation_timestamp,campaign_id\n" + data)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_as_xlsx_never_crash(data):
    load_and_validate(data, ".xlsx")
    load_and_validate(b"PK\x03\x04" + data, ".xlsx")


cell = st.text(st.characters(blacklist_characters="\r\x00", blacklist_categories=("Cs",)), max_size=12)


@FAST
@given(
    extra=st.lists(st.from_regex(r"[a-z]{1,6}", fullmatch=True), max_size=3, unique=True),
    rows=st.lists(st.lists(cell, min_size=8, max_size=8), max_size=6),
    delimiter=st.sampled_from([",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]),
)
def test_what_is_written_with_a_csv_writer_reads_back(extra, rows, delimiter, encoding):
    extra = [e for e in extra if e not in REQUIRED and not e.startswith("import_")]
    header = REQUIRED + extra
    rows = [r[: len(header)] for r in rows]
    rows = [r for r in rows if any(c.strip() for c in r)]  # blank rows are skipped by design
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows([header, *rows])
    cfg = Config(manifest=ManifestConfig(delimiter=delimiter))  # detection has its own tests
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.csv"
        path.write_bytes(buf.getvalue().encode(encoding))
        loaded = load_manifest(path, cfg)
    assert loaded.headers == tuple(header)
    assert loaded.frame.astype(object).values.tolist() == rows
    assert loaded.line_numbers.tolist() == [2 + i for i in range(len(rows))]


@settings(max_examples=200, deadline=None)
@given(
    number=st.from_regex(r"(\+33|0033|0|33|\+44|00)?[0-9]{0,12}", fullmatch=True),
    separators=st.booleans(),
    region=st.sampled_from(["FR", "US", "DE", "GB", "BE"]),
)
def test_phone_fast_path_agrees_with_phonenumbers(number, separators, region):
    value = " ".join(number[i : i + 2] for i in range(0, len(number), 2)) if separators else number
    out, errors = normalize_phones(pd.Series([value], dtype=str), region)
    if not value.strip():
        assert (out[0], errors[0]) == ("", "")
        return
    try:
        parsed = phonenumbers.parse(value, region)
        valid = phonenumbers.is_valid_number(parsed)
    except phonenumbers.NumberParseException:
        valid = False
    if out[0] and region == "FR" and not valid:
        # Overseas France dialled nationally (0590..., 0692...): valid under its own region.
        overseas = phonenumbers.parse(out[0], None)
        assert phonenumbers.is_valid_number(overseas) and out[0][4:] == value.replace(" ", "")[1:]
    elif out[0]:
        assert valid
        assert out[0] == phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    else:
        # Refused: either phonenumbers refuses it too, or it is a lost leading zero (which it would accept).
        assert not valid or errors[0].startswith("lost its leading zero")


@settings(max_examples=100, deadline=None)
@given(
    moment=st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2026, 5, 30)),
    zone=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]),
)
def test_timestamp_notations_agree(moment, zone):
    # fold=0: a local time that occurs twice (DST ends) is read as its first occurrence, so every notation
    # below must name that one (hypothesis also draws fold=1, whose Unix notations name the second).
    moment = moment.replace(microsecond=0, fold=0)
    from zoneinfo import ZoneInfo

    local = moment.replace(tzinfo=ZoneInfo(zone))
    if local.astimezone(dt.UTC).astimezone(ZoneInfo(zone)).replace(tzinfo=None) != moment:
        return  # a time inside a DST gap: covered by its own test
    expected = int(local.timestamp())
    if moment.fold == 0 and ZoneInfo(zone).utcoffset(moment.replace(fold=1)) != local.utcoffset():
        expected = int(moment.replace(tzinfo=ZoneInfo(zone), fold=0).timestamp())  # ambiguous: first one
    notations = [
        str(int(local.timestamp())),
        str(int(local.timestamp()) * 1000 + 999),
        local.isoformat(),
        local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        moment.strftime("%Y-%m-%d %H:%M:%S"),
        moment.strftime("%d/%m/%Y %H:%M:%S"),
        moment.strftime("%d.%m.%Y %H:%M:%S"),
    ]
    seconds, errors = parse_timestamps(pd.Series(notations, dtype=str), timezone=zone, now=NOW)
    assert errors.tolist() == [""] * len(notations)
    assert seconds.tolist() == [expected] * len(notations)
