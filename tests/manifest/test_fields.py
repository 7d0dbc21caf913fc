"""Field normalisation: emails, names, timestamps, phone numbers."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from importer.manifest.fields import explicit_names, name_from_email, normalize_emails
from importer.manifest.phones import normalize_phones
from importer.manifest.timestamps import parse_timestamps

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
T = 1764077400  # 2025-11-25T13:30:00Z = 14:30 in Paris


def series(*values: str) -> pd.Series:
    return pd.Series(list(values), dtype=str)


def parse(*values: str, tz: str = "Europe/Paris", dayfirst: bool = True) -> list[tuple[int, str]]:
    seconds, errors = parse_timestamps(series(*values), timezone=tz, dayfirst=dayfirst, now=NOW)
    return list(zip(seconds.tolist(), errors.tolist(), strict=True))


# --- emails ---------------------------------------------------------------------------------------


def test_emails_are_trimmed_lowercased_and_validated():
    values, errors = normalize_emails(series(" Jean.Dupont@Example.COM ", "bad@", "", "a..b@x.fr", "x@y.fr"))
    assert values.tolist() == ["jean.dupont@example.com", "bad@", "", "a..b@x.fr", "x@y.fr"]
    assert errors.tolist() == [
        "",
        "not a valid email address: 'bad@' (There must be something after the @-sign)",
        "",
        "not a valid email address: 'a..b@x.fr' (An email address cannot have two periods in a row)",
        "",
    ]


@pytest.mark.parametrize("address", ["Jean <j@x.fr>", "j@localhost", "j@x.test", "j x@x.fr", "@x.fr", "j@"])
def test_invalid_emails(address):
    _, errors = normalize_emails(series(address))
    assert errors[0].startswith("not a valid email address: ")


def test_equal_addresses_share_one_object():
    values, _ = normalize_emails(series("A@x.fr", "a@x.fr ", "a@X.FR"))
    assert values[0] is values[1] is values[2]


# --- names ----------------------------------------------------------------------------------------


def test_invite_names():
    name = series("  Jean   Dupont ", "", "", "")
    first = series("x", " Marie ", "", "Solo")
    last = series("y", "Curie\t Sklodowska", "", "")
    assert explicit_names(name, first, last, 4).tolist() == [
        "Jean Dupont",
        "Marie Curie Sklodowska",
        "",
        "Solo",
    ]
    assert explicit_names(None, None, None, 2).tolist() == ["", ""]


@pytest.mark.parametrize(
    ("email", "name"),
    [
        ("jean.dupont@x.fr", "Jean Dupont"),
        ("marie_curie-sklodowska@x.fr", "Marie Curie-Sklodowska"),
        ("jean-marc.o'neil@x.fr", "Jean-Marc O'neil"),
        ("JEAN.DUPONT+qm@x.fr", "Jean Dupont"),
        ("agent42@x.fr", "Agent42"),
        ("_._@x.fr", "_._"),
    ],
)
def test_names_derived_from_the_email(email, name):
    assert name_from_email(email) == name


# --- timestamps -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        str(T),
        f"{T}.0",
        f"{T}123",  # milliseconds: the remainder is dropped (rounded down)
        f"{T}999.9",
        "2025-11-25T14:30:00+01:00",
        "2025-11-25T13:30:00Z",
        "2025-11-25t13:30:00z",
        "2025-11-25T13:30:00.999Z",  # fractions of a second are dropped
        "2025-11-25T14:30:00,5+0100",
        "2025-11-25T14:30+01",
        "2025-11-25 14:30:00",
        "2025-11-25T14:30",
        "25/11/2025 14:30",
        "25/11/2025 14:30:00",
        "25-11-2025 14:30",
        "25.11.2025 14h30",
        "2025/11/25 14:30",
        "  25/11/2025   14:30 ",
    ],
)
def test_accepted_formats(value):
    assert parse(value) == [(T, "")]


def test_milliseconds_of_2000_have_12_digits():
    assert parse("978307200123") == [(978307200, "")]  # 2001-01-01T00:00:00.123Z


def test_date_only_is_midnight_local():
    assert parse("25/11/2025", "25.11.2025", "2025-11-25") == [(T - 14 * 3600 - 1800, "")] * 3


def test_seconds_of_day_first_dates():
    assert parse("25/11/2025 14:30:05") == [(T + 5, "")]


def test_naive_times_use_the_configured_zone():
    assert parse("2025-11-25 13:30:00", tz="UTC") == [(T, "")]
    assert parse("2025-07-01 12:00:00")[0][0] == int(dt.datetime(2025, 7, 1, 10, tzinfo=dt.UTC).timestamp())


def test_dayfirst_decides_ambiguous_dates():
    april_3 = int(dt.datetime(2026, 4, 3, tzinfo=dt.UTC).timestamp())
    march_4 = int(dt.datetime(2026, 3, 4, tzinfo=dt.UTC).timestamp())
    assert parse("03/04/2026", tz="UTC", dayfirst=True) == [(april_3, "")]
    assert parse("03/04/2026", tz="UTC", dayfirst=False) == [(march_4, "")]


def test_a_date_impossible_under_the_setting_is_an_error_never_swapped():
    assert parse("11/25/2025 14:30", dayfirst=True) == [
        (
            0,
            "impossible date when read day first (manifest.dayfirst is true): '11/25/2025 14:30'; if the file "
            "writes the month first, set manifest.dayfirst: false",
        )
    ]
    assert parse("25/11/2025", dayfirst=False) == [
        (
            0,
            "impossible date when read month first (manifest.dayfirst is false): '25/11/2025'; if the file "
            "writes the day first, set manifest.dayfirst: true",
        )
    ]
    assert parse("13/25/2026", dayfirst=True) == [(0, "not a valid date/time: '13/25/2026'")]
    assert parse("13/25/2026", dayfirst=False) == [(0, "not a valid date/time: '13/25/2026'")]


def test_month_first_file():
    assert parse("11/25/2025 14:30", dayfirst=False) == [(T, "")]


def test_dst_gap_is_an_error():
    assert parse("2026-03-29 02:30", "29/03/2026 02:30") == [
        (
            0,
            "'2026-03-29 02:30' does not exist in Europe/Paris: the clocks skip that hour when summer time "
            "starts; check the time",
        ),
        (
            0,
            "'29/03/2026 02:30' does not exist in Europe/Paris: the clocks skip that hour when summer time "
            "starts; check the time",
        ),
    ]


def test_dst_ambiguous_hour_takes_the_first_occurrence():
    # 2025-10-26 02:30 happens twice in Paris: first at +02:00 (summer time), i.e. 00:30 UTC.
    first = int(dt.datetime(2025, 10, 26, 0, 30, tzinfo=dt.UTC).timestamp())
    assert parse("2025-10-26 02:30", "26/10/2025 02:30") == [(first, ""), (first, "")]


def test_explicit_offsets_ignore_the_zone():
    assert parse("2026-03-29T02:30:00+01:00") == [
        (int(dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC).timestamp()), "")
    ]


def test_range_and_format_errors():
    assert parse(
        "946684799", "0", "1999-12-31T23:59:59Z", "2030-01-01T00:00:00Z", "garbage", "12345678901234", ""
    ) == [
        (0, "before 2000: '946684799' is 1999-12-31T23:59:59Z"),
        (0, "before 2000: '0' is 1970-01-01T00:00:00Z"),
        (0, "before 2000: '1999-12-31T23:59:59Z' is 1999-12-31T23:59:59Z"),
        (
            0,
            "in the future: '2030-01-01T00:00:00Z' is 2030-01-01T00:00:00Z (check the date, and manifest.timezone)",
        ),
        (
            0,
            "not a date/time this tool can read: 'garbage' (use Unix seconds, ISO 8601 such as "
            "2025-11-25T14:30:00+01:00, or 25/11/2025 14:30)",
        ),
        (0, "'12345678901234' has 14 digits: Unix seconds have 10 digits and milliseconds 13"),
        (0, ""),
    ]


def test_a_few_minutes_ahead_is_tolerated():
    now = int(NOW.timestamp())
    assert parse(str(now + 200))[0] == (now + 200, "")
    assert parse(str(now + 400))[0][1].startswith("in the future")


@pytest.mark.parametrize(
    "value",
    ["2025-02-30 10:00", "31/04/2025", "25/11/2025 24:00", "2025-11-25T25:00:00Z", "2025-13-01", "٢٠٢٥"],
)
def test_impossible_dates(value):
    [(seconds, error)] = parse(value)
    assert seconds == 0 and error


# --- phones ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "0612345678",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33612345678",
        "+33 6 12 34 56 78",
        "+33 (0)6 12 34 56 78",
        "0033612345678",
        "33612345678",  # Excel dropped the "+": the country code is still unambiguous
        " 0612345678 ",
    ],
)
def test_french_numbers_to_e164(value):
    out, errors = normalize_phones(series(value), "FR")
    assert (out[0], errors[0]) == ("+33612345678", "")


def test_other_number_types_and_foreign_numbers():
    out, errors = normalize_phones(series("01 99 00 12 34", "0800123456", "+44 20 7946 0958", ""), "FR")
    assert out.tolist() == ["+33199001234", "+33800123456", "+442079460958", ""]
    assert errors.tolist() == ["", "", "", ""]


def test_excel_damage_says_what_to_fix():
    out, errors = normalize_phones(series("3.3612E+10", "3,3612E+10", "612345678", "33612345678.0"), "FR")
    assert out.tolist() == ["", "", "", ""]
    assert errors.tolist() == [
        "damaged by Excel (scientific notation): the last digits are lost; format the column as text in Excel "
        "and type the numbers again",
        "damaged by Excel (scientific notation): the last digits are lost; format the column as text in Excel "
        "and type the numbers again",
        "lost its leading zero (612345678 should be 0612345678): format the column as text in Excel",
        "stored as a decimal number by a spreadsheet ('33612345678.0'): format the column as text in Excel and "
        "type the numbers again",
    ]


def test_invalid_numbers():
    _, errors = normalize_phones(series("12", "abc", "06 12", "+33 1"), "FR")
    assert errors.tolist() == [
        "not a valid phone number (default region FR): '12'",
        "not a phone number: 'abc'",
        "not a valid phone number (default region FR): '06 12'",
        "not a valid phone number (default region FR): '+33 1'",
    ]


def test_regions_without_a_zero_prefix_accept_bare_digits():
    out, errors = normalize_phones(series("2025550123", "(202) 555-0123", "+1 202 555 0123"), "US")
    assert out.tolist() == ["+12025550123"] * 3
    assert errors.tolist() == ["", "", ""]


def test_other_region_default():
    out, errors = normalize_phones(series("030 123456", "+49 30 123456"), "de")
    assert out.tolist() == ["+4930123456", "+4930123456"]
    assert errors.tolist() == ["", ""]


def test_overseas_french_numbers_dialled_from_france_are_valid():
    import pandas as pd

    values, errors = normalize_phones(pd.Series(["0590 12 34 56", "0692 12 34 56", "0123"]), "FR")
    assert values.tolist()[:2] == ["+590590123456", "+262692123456"]
    assert errors.tolist()[:2] == ["", ""] and errors.tolist()[2].startswith("not a valid phone number")
