"""Normalising manifest fields, vectorised over pandas Series.

Every function takes a Series of str (one cell per row) and returns numpy arrays aligned with it: the
normalised values and the error messages ("" when the cell is fine, or empty: requiredness is the
validator's business). Work that has no vector form (email-validator, phonenumbers) runs once per
*distinct* value, never once per row.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pandas as pd

# --- shared helpers ------------------------------------------------------------------------------


def show(value: str, limit: int = 40) -> str:
    """A cell value quoted for a message, cut short so a 10 MB cell does not flood the terminal."""
    value = "".join(ch if ch.isprintable() else " " for ch in value[: limit + 1])
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return f"'{value}'"


def as_text(raw: pd.Series) -> pd.Series:
    """The column as trimmed str with "" for missing cells."""
    return raw.fillna("").astype(str).str.strip()


def no_messages(n: int) -> np.ndarray:
    """An object array of n empty messages ("" means: no problem)."""
    out = np.empty(n, dtype=object)
    out[:] = ""
    return out


# --- emails --------------------------------------------------------------------------------------


def normalize_emails(raw: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Trim and lowercase; validate each distinct address once with email-validator (syntax only: no DNS).

    email-validator is stricter and more precise than any regex (dot rules, label lengths, reserved domains
    such as .test or localhost) and its reason is shown to the user.
    """
    values = as_text(raw).str.lower()
    # One object per distinct address, shared by its rows (a million rows, a few hundred agents).
    codes, uniques = pd.factorize(values.to_numpy(dtype=object))
    verdicts = np.array([_email_error(u) if u else "" for u in uniques], dtype=object)
    if not len(values):
        return np.zeros(0, dtype=object), np.zeros(0, dtype=object)
    return np.asarray(uniques, dtype=object)[codes], verdicts[codes]


@lru_cache(maxsize=65536)
def _email_error(address: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"not a valid email address: {show(address)} ({str(exc).rstrip('.')})"
    except Exception as exc:  # a library bug on an odd input must not become a traceback
        return f"not a valid email address: {show(address)} ({exc})"
    return ""


# --- names ---------------------------------------------------------------------------------------


def clean_names(raw: pd.Series | None, n: int) -> np.ndarray:
    """Trimmed, inner whitespace collapsed to one space; "" when absent."""
    if raw is None:
        return np.full(n, "", dtype=object)
    values = raw.fillna("").astype(str)
    # Only cells with a run of whitespace or a non-space whitespace need the regex (most names do not).
    needs = values.str.contains(r"\s\s|[^\S ]", regex=True).to_numpy(dtype=bool)
    out = values.str.strip().to_numpy(dtype=object)
    if needs.any():
        out[needs] = values[needs].str.replace(r"\s+", " ", regex=True).str.strip().to_numpy(dtype=object)
    return out


def explicit_names(
    name: pd.Series | None, first: pd.Series | None, last: pd.Series | None, n: int
) -> np.ndarray:
    """The invite name given in the manifest: `agent_name`, else `First Last`; "" when the row gives none."""
    full = clean_names(name, n)
    if first is None and last is None:
        return full
    first_v = clean_names(first, n)
    last_v = clean_names(last, n)
    joined = (pd.Series(first_v, dtype=object) + " " + pd.Series(last_v, dtype=object)).str.strip()
    joined_v = joined.to_numpy(dtype=object)
    return np.where(full != "", full, joined_v)


_NAME_SPLIT = re.compile(r"[._]+")


def name_from_email(email: str) -> str:
    """`jean.dupont@x.fr` -> `Jean Dupont`: the local part (without a +tag) split on . and _, each word
    capitalised; a hyphen stays, as in French compound names (`jean-marc.o@x.fr` -> `Jean-Marc O`)."""
    local = email.split("@", 1)[0].split("+", 1)[0]
    parts = [p for p in _NAME_SPLIT.split(local) if p.strip("-")]
    if not parts:
        return local or email
    return " ".join("-".join(w[:1].upper() + w[1:].lower() for w in p.split("-") if w) for p in parts)
