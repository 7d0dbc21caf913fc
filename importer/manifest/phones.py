"""Phone columns to E.164 (`+33612345678`), with the Excel damage that must be fixed at the source.

Valid means phonenumbers' `is_valid_number`, with `metadata.default_region` as the region of numbers
written without an international prefix. phonenumbers costs ~25 us a number, too slow for a million
distinct client numbers, so the usual shapes of the region's own numbers (+33 6..., 0033 6..., 06...)
are checked by one vectorised pattern built from phonenumbers' own metadata; everything else goes
through phonenumbers once per distinct value. The fast path only ever accepts what phonenumbers would
accept (a property test compares them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from .fields import as_text, no_messages, show

_SEPARATORS = r"[\s.\-()/\u00a0\u202f]"
_SCIENTIFIC = r"^[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-]?[0-9]+$"
_DECIMAL = r"^\+?[0-9]{6,}[.,]0+$"
_EXCEL_SCIENTIFIC = (
    "damaged by Excel (scientific notation): the last digits are lost; format the column as text in "
    "Excel and type the numbers again"
)


def normalize_phones(raw: pd.Series, region: str) -> tuple[np.ndarray, np.ndarray]:
    """E.164 (`+33612345678`) where valid, else an error saying what to fix.

    Valid means phonenumbers' `is_valid_number` with `region` as the default for numbers written without
    an international prefix (a valid foreign number written +44... is accepted). Excel damage is an error:
    scientific notation (digits lost), a decimal `.0`, and a lost leading zero (`612345678` for FR, which
    phonenumbers alone would accept, but which means the column was numeric and other rows may be damaged
    too). A fast vectorised path handles the usual shapes of the region's own numbers; everything else
    goes through phonenumbers once per distinct value.
    """
    values = as_text(raw)
    n = len(values)
    out = np.full(n, "", dtype=object)
    errors = no_messages(n)
    present = (values != "").to_numpy(dtype=bool)
    if not present.any():
        return out, errors
    region = region.upper()
    rules = _region_rules(region)
    if rules is not None:
        _fast_phones(values, present, rules, out, errors)
    # Excel damage, checked only on what the fast path did not settle (a damaged value never passes it).
    pending = present & (out == "") & (errors == "")
    if pending.any():
        rest = values[pending]
        positions = np.flatnonzero(pending)
        scientific = np.array(rest.str.fullmatch(_SCIENTIFIC), dtype=bool)
        errors[positions[scientific]] = _EXCEL_SCIENTIFIC
        decimal = np.array(rest.str.fullmatch(_DECIMAL), dtype=bool) & ~scientific
        for i in positions[decimal]:
            errors[i] = (
                f"stored as a decimal number by a spreadsheet ({show(values.iat[i])}): format the column as text in "
                "Excel and type the numbers again"
            )
    slow = np.flatnonzero(pending & (out == "") & (errors == ""))
    if len(slow):
        subset = values.iloc[slow]
        verdicts = {u: _phone_slow(u, region) for u in pd.unique(subset.to_numpy(dtype=object))}
        for k, value in zip(slow, subset.tolist(), strict=True):
            out[k], errors[k] = verdicts[value]
    return out, errors


@dataclass(frozen=True)
class _RegionRules:
    """What the fast path needs from phonenumbers' metadata for one region, as two compiled patterns."""

    country_code: str
    national_prefix: str  # "" when the region has none
    prefixed: re.Pattern[str]  # +CC..., <intl>CC..., <national prefix>...: captures the national number
    valid: re.Pattern[str]  # phonenumbers' validity test of a national number, in one pattern
    general: re.Pattern[str]  # the region's general national-number pattern (with its lengths)


def _desc_pattern(pattern: str, lengths: tuple[int, ...]) -> str:
    """Lookaheads that hold when the whole string matches `pattern` and has one of `lengths`, as in
    phonenumbers' `_is_number_matching_desc` (no lengths: any length; only -1: no number of this type)."""
    length = ""
    if lengths:
        allowed = [n for n in lengths if n >= 0]
        length = "(?=(?:" + "|".join(f".{{{n}}}" for n in allowed) + r")\Z)" if allowed else "(?!)"
    return length + "(?=(?:" + pattern + r")\Z)"


@lru_cache(maxsize=64)
def _region_rules(region: str) -> _RegionRules | None:
    """None when the region's rules are too intricate for the fast path (shared country code, a national
    prefix given as a pattern, a transform rule): those regions always use phonenumbers itself."""
    import phonenumbers
    from phonenumbers import PhoneMetadata

    md = PhoneMetadata.metadata_for_region(region)
    if md is None or md.country_code is None:
        return None
    if len(phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(md.country_code, ())) != 1:
        return None
    national = md.national_prefix or ""
    parsing = md.national_prefix_for_parsing
    if (parsing is not None and parsing != national) or md.national_prefix_transform_rule:
        return None
    if national and not national.isdigit():
        return None
    intl = md.international_prefix or ""
    intl = intl if intl.isdigit() else ""
    general = md.general_desc
    if general is None or not general.national_number_pattern:
        return None

    def desc(d: object) -> str | None:
        pattern = getattr(d, "national_number_pattern", None)
        if not pattern:
            return None
        return _desc_pattern(pattern, tuple(getattr(d, "possible_length", None) or ()))

    # Mobile and fixed lines first: validity is "any type matches", and they are what call centres call.
    kinds = (
        md.mobile,
        md.fixed_line,
        md.toll_free,
        md.premium_rate,
        md.shared_cost,
        md.voip,
        md.personal_number,
        md.pager,
        md.uan,
        md.voicemail,
    )
    types = [t for t in (desc(k) for k in kinds) if t is not None]
    if not types:
        return None
    general_rule = desc(general)
    assert general_rule is not None
    cc = str(md.country_code)
    prefixes = [re.escape("+" + cc)] + ([intl + cc] if intl else []) + ([national] if national else [])
    # (?!national): a national number that starts with the prefix again would be stripped a second time
    # by phonenumbers; leave those to it.
    not_again = f"(?!{national})" if national else ""
    return _RegionRules(
        country_code=cc,
        national_prefix=national,
        prefixed=re.compile(f"^(?:{'|'.join(prefixes)}){not_again}([0-9]+)$"),
        valid=re.compile(general_rule + "(?:" + "|".join(types) + ")"),
        general=re.compile(general_rule),
    )


_SEPARATOR_TABLE = str.maketrans(dict.fromkeys(" \t.-()/\u00a0\u202f\u2009", None))


def _fast_phones(
    values: pd.Series, pending: np.ndarray, rules: _RegionRules, out: np.ndarray, errors: np.ndarray
) -> None:
    """Numbers of the region itself written +CC..., 00CC..., 0... (one extract, one validity pattern), and
    bare digits (a lost leading zero, or the country code without its "+"). Only what is certain is
    decided here; anything the fast path cannot vouch for is left for phonenumbers."""
    idx = np.flatnonzero(pending)
    cleaned = values.iloc[idx].str.translate(_SEPARATOR_TABLE).reset_index(drop=True)
    cc, national = rules.country_code, rules.national_prefix
    nsn = cleaned.str.extract(rules.prefixed, expand=False)
    has = nsn.notna().to_numpy(dtype=bool)
    if has.any():
        sub = nsn[has]
        ok = np.array(sub.str.match(rules.valid), dtype=bool)
        out[idx[np.flatnonzero(has)[ok]]] = ("+" + cc + sub[ok]).to_numpy(dtype=object)
    rest = np.flatnonzero(~has)
    if not len(rest):
        return
    leftover = cleaned.iloc[rest]
    bare = np.array(leftover.str.fullmatch(r"[1-9][0-9]*"), dtype=bool)
    if not bare.any():
        return
    bare_pos = rest[bare]
    whole = leftover[bare]
    whole_valid = np.array(whole.str.match(rules.valid), dtype=bool)
    if national == "0":
        for k, value in zip(bare_pos[whole_valid], whole[whole_valid].tolist(), strict=True):
            errors[idx[k]] = _lost_zero(values.iat[idx[k]], value)
    else:
        out[idx[bare_pos[whole_valid]]] = ("+" + cc + whole[whole_valid]).to_numpy(dtype=object)
    # The country code without its "+" (Excel turns +33612345678 into the number 33612345678).
    # phonenumbers strips it only when the whole does not fit the national pattern.
    others = ~whole_valid
    if not others.any():
        return
    candidates = whole[others]
    with_cc = np.array(candidates.str.startswith(cc), dtype=bool) & ~np.array(
        candidates.str.match(rules.general), dtype=bool
    )
    if not with_cc.any():
        return
    national_part = candidates[with_cc].str.slice(len(cc))
    ok = np.array(national_part.str.match(rules.valid), dtype=bool)
    if national:
        ok &= ~np.array(national_part.str.startswith(national), dtype=bool)
    positions = bare_pos[others][with_cc][ok]
    out[idx[positions]] = ("+" + cc + national_part[ok]).to_numpy(dtype=object)


def _lost_zero(original: str, digits: str) -> str:
    return f"lost its leading zero ({original} should be 0{digits}): format the column as text in Excel"


def _phone_slow(value: str, region: str) -> tuple[str, str]:
    import phonenumbers

    invalid = f"not a valid phone number (default region {region}): {show(value)}"
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.NOT_A_NUMBER:
            return "", f"not a phone number: {show(value)}"
        return "", invalid
    except Exception:  # the library must not turn a strange cell into a traceback
        return "", f"not a phone number: {show(value)}"
    if not phonenumbers.is_valid_number(number):
        overseas = _overseas(value, region)
        return (overseas, "") if overseas else ("", invalid)
    cleaned = re.sub(_SEPARATORS, "", value)
    md = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if (
        md is not None
        and md.national_prefix == "0"
        and cleaned.isdigit()
        and not cleaned.startswith("0")
        and number.country_code == md.country_code
        and str(number.national_number) == cleaned
    ):
        return "", _lost_zero(value, cleaned)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), ""


# Overseas departments and collectivities are dialled from mainland France with a 0 and their own prefix
# (0590 / 0690 Guadeloupe, 0262 / 0692 Réunion, ...) but have country codes of their own (+590, +262, ...),
# so phonenumbers does not find them under region FR.
_NATIONAL_NEIGHBOURS = {"FR": ("GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF")}


def _overseas(value: str, region: str) -> str:
    """Only a full national number (0 + 9 digits) whose digits after the 0 are the overseas number itself
    (0590 12 34 56 -> +590 590 12 34 56); anything shorter or international stays invalid."""
    import phonenumbers

    digits = re.sub(_SEPARATORS, "", value)
    if not (len(digits) == 10 and digits.isdigit() and digits.startswith("0")):
        return ""
    for other in _NATIONAL_NEIGHBOURS.get(region.upper(), ()):
        try:
            number = phonenumbers.parse(value, other)
        except phonenumbers.NumberParseException:
            return ""
        if phonenumbers.is_valid_number(number) and str(number.national_number) == digits[1:]:
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return ""
