"""Validation bookkeeping: problems gathered as vectors, and the checks that compare rows with each other
(duplicates, conflicting agent names)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .model import Problem, Severity


class Issues:
    """Problems gathered as vectors (positions, column, messages), turned into `Problem`s at the end."""

    def __init__(self, lines: np.ndarray, order: dict[str, int]) -> None:
        self.lines = lines
        self.order = order
        self.parts: list[tuple[np.ndarray, str, np.ndarray, Severity]] = []

    def add(
        self, mask: np.ndarray, column: str, messages: np.ndarray | str, severity: Severity = "error"
    ) -> None:
        """One problem per True in `mask`: one message for all, or the message at each row's position."""
        positions = np.flatnonzero(mask)
        if not len(positions):
            return
        if isinstance(messages, str):
            texts = np.full(len(positions), messages, dtype=object)
        else:
            texts = np.asarray(messages, dtype=object)[positions]
        self.parts.append((positions, column, texts, severity))

    def error_mask(self, n: int) -> np.ndarray:
        """True for the rows that have at least one error."""
        bad = np.zeros(n, dtype=bool)
        for positions, _, _, severity in self.parts:
            if severity == "error":
                bad[positions] = True
        return bad

    def build(self, extra: tuple[Problem, ...]) -> tuple[list[Problem], dict[int, str]]:
        """Every problem (plus `extra`, the loader's and the config's) sorted by row, then by column order
        in the file, errors before warnings; and, per invalid row index, its errors as
        "<column>: <message>" joined with "; " (what the results CSV says in import_error)."""
        if not self.parts:
            return sorted(extra, key=lambda p: p.row), {}
        positions = np.concatenate([p[0] for p in self.parts])
        columns = np.concatenate([np.full(len(p[0]), k, dtype=np.int64) for k, p in enumerate(self.parts)])
        col_order = np.array([self.order.get(p[1], len(self.order)) for p in self.parts], dtype=np.int64)
        warning = np.array([p[3] == "warning" for p in self.parts], dtype=bool)
        texts = np.concatenate([p[2] for p in self.parts])
        sort = np.lexsort((warning[columns], col_order[columns], positions))
        problems: list[Problem] = []
        invalid: dict[int, list[str]] = {}
        lines = self.lines
        for j in sort.tolist():
            part = self.parts[columns[j]]
            position = int(positions[j])
            problems.append(Problem(int(lines[position]), part[1], texts[j], part[3]))
            if part[3] == "error":
                invalid.setdefault(position, []).append(f"{part[1]}: {texts[j]}")
        if extra:
            # Stable: a row's loader/config warnings (a torn line) come before its column problems.
            problems = sorted([*extra, *problems], key=lambda p: p.row)
        return problems, {i: "; ".join(msgs) for i, msgs in invalid.items()}


def flag_duplicates(
    issues: Issues,
    keyed: np.ndarray,
    campaign: np.ndarray,
    email: np.ndarray,
    timestamps: np.ndarray,
    path_code: np.ndarray,
    lines: np.ndarray,
    column: str,
) -> None:
    positions = np.flatnonzero(keyed)
    if len(positions) < 2:
        return
    key = pd.DataFrame(
        {
            "c": campaign[positions],
            "e": email[positions],
            "t": timestamps[positions],
            "f": path_code[positions],
        }
    )
    dup = key.duplicated(keep="first").to_numpy(dtype=bool)
    if not dup.any():
        return
    group = key.groupby(["c", "e", "t", "f"], sort=False).ngroup().to_numpy()
    _, first_of_group = np.unique(group, return_index=True)
    first_sorted = np.empty(group.max() + 1, dtype=np.int64)
    first_sorted[np.unique(group)] = first_of_group
    later = positions[dup]
    first = positions[first_sorted[group[dup]]]
    texts = np.empty(len(keyed), dtype=object)
    texts[later] = [f"duplicate of row {int(lines[i])}" for i in first]
    mask = np.zeros(len(keyed), dtype=bool)
    mask[later] = True
    issues.add(mask, column, texts)


def first_names_by_email(
    issues: Issues,
    good_email: np.ndarray,
    email: np.ndarray,
    names: np.ndarray,
    lines: np.ndarray,
    column: str,
) -> dict[str, str]:
    """email -> the first name given for it; warns on later rows that give another name."""
    positions = np.flatnonzero(good_email & (names != ""))
    if not len(positions):
        return {}
    df = pd.DataFrame({"e": email[positions], "n": names[positions], "p": positions})
    df["f"] = df["n"].str.casefold()
    first = df.drop_duplicates("e")
    first_names = dict(zip(first["e"].tolist(), first["n"].tolist(), strict=True))
    first_fold = df["e"].map(dict(zip(first["e"], first["f"], strict=True)))
    differs = (df["f"] != first_fold).to_numpy(dtype=bool)
    if differs.any():
        first_pos = dict(zip(first["e"].tolist(), first["p"].tolist(), strict=True))
        texts = np.empty(len(good_email), dtype=object)
        mask = np.zeros(len(good_email), dtype=bool)
        for e, name, p in df.loc[differs, ["e", "n", "p"]].itertuples(index=False):
            texts[p] = (
                f"agent {e} is already named '{first_names[e]}' on row {int(lines[first_pos[e]])}; "
                f"'{name}' is not used (the first name wins)"
            )
            mask[p] = True
        issues.add(mask, column, texts, "warning")
    return first_names
