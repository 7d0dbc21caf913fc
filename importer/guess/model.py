"""What `init` guessed about a manifest, and how it says so: to people (`lines`) and to config.yaml
(`yaml_text`)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

REQUIRED = ("file_path", "agent_email", "conversation_timestamp", "campaign_id")
FIELDS = ("file_path", "agent_email", "agent_name", "agent_first_name", "agent_last_name",
          "conversation_timestamp", "campaign_id")
_PLAIN = re.compile(r"\w[\w .\-/]*\w|\w")  # letters, digits, inner spaces, dots, dashes, slashes
_ABSENT = {
    "file_path": "no column looks like the recording's file; set columns.file_path",
    "agent_email": "no column looks like the agent's email; set columns.agent_email",
    "conversation_timestamp": "no column looks like the call's date and time; set columns.conversation_timestamp",
    "campaign_id": "no campaign column: set campaign_id in this file, or pass --campaign-id",
}


@dataclass(frozen=True)
class Guess:
    manifest: Path
    mapping: dict[str, str]  # field -> manifest header, for the fields found
    rows: int
    header_row: int
    title_rows: bool  # rows above the header were skipped (so header_row is written)
    encoding: str | None  # None for XLSX
    delimiter: str | None
    sheet: str | None
    sheets: tuple[str, ...] = ()
    phone_columns: tuple[str, ...] = ()
    default_region: str = "FR"
    dayfirst: bool = True
    dayfirst_reason: str = "could not tell from the data (no date with a day above 12); kept the default"
    timezone: str = "UTC"
    timezone_reason: str = "no French headers or data"
    metadata: tuple[str, ...] = ()  # the other columns (sent as metadata)
    notes: tuple[str, ...] = field(default=())  # what it could not guess

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(f for f in REQUIRED if f not in self.mapping)

    def could_not(self) -> list[str]:
        return [_ABSENT[f] for f in self.missing] + list(self.notes)

    def lines(self) -> list[str]:
        """What was guessed and what could not be, for people."""
        how = "XLSX" if self.encoding is None else f"{self.encoding}, {_delimiter_name(self.delimiter)}"
        where = f", sheet {self.sheet!r}" if self.sheet else ""
        out = [f"read {self.manifest.name} ({how}{where}): header on row {self.header_row}"
               + (" (the rows above it are titles)" if self.title_rows else "") + f", {self.rows} rows"]
        out.append("columns:")
        for f in FIELDS:
            if f in self.mapping:
                out.append(f"  {f:<23} <- {self.mapping[f]!r}")
        if not any(f in self.mapping for f in ("agent_name", "agent_first_name", "agent_last_name")):
            out.append("  agent names: none found; they are derived from the email (jean.dupont@x.fr -> Jean Dupont)")
        if self.phone_columns:
            out.append(f"phone columns ({self.default_region}, sent in E.164): "
                       + ", ".join(repr(h) for h in self.phone_columns))
        out.append(f"dayfirst: {str(self.dayfirst).lower()} ({self.dayfirst_reason})")
        out.append(f"time zone: {self.timezone} ({self.timezone_reason})")
        if self.metadata:
            out.append("metadata (every other column): " + ", ".join(repr(h) for h in self.metadata))
        for note in self.could_not():
            out.append(f"could not guess: {note}")
        return out

    def yaml_text(self) -> str:
        """The commented config.yaml: every guessed value with the reason, the rest left to the defaults."""
        q = _quote
        out = [
            f"# config.yaml guessed by `allobrain-import init` from {self.manifest.name} on {date.today():%Y-%m-%d}.",
            "# Check each value (the comments say why it was chosen), then run",
            f"#   allobrain-import validate {self.manifest.name} --config <this file>",
            "# Every key, with its meaning, is in the project's config.yaml example and README.",
            "",
            "manifest:",
        ]
        if self.encoding is not None:
            out.append(f"  encoding: {q(self.encoding)}  # detected")
            out.append(f"  delimiter: {q(self.delimiter or ',')}  # detected")
        if self.sheet is not None:
            others = [s for s in self.sheets if s != self.sheet]
            out.append(f"  sheet: {q(self.sheet)}  # the sheet with the manifest's headers"
                       + (f" (others: {', '.join(others)})" if others else ""))
        if self.title_rows:
            out.append(f"  header_row: {self.header_row}  # the rows above it are titles")
        out.append(f"  timezone: {q(self.timezone)}  # {self.timezone_reason}")
        out.append(f"  dayfirst: {str(self.dayfirst).lower()}  # {self.dayfirst_reason}")
        out += ["", "columns:  # field -> the header in your manifest"]
        for f in FIELDS:
            if f in self.mapping:
                out.append(f"  {f}: {q(self.mapping[f])}")
            elif f in REQUIRED and f != "campaign_id":
                out.append(f"  # {f}: ???  # {_ABSENT[f]}")
        if "campaign_id" not in self.mapping:
            out += ["", "campaign_id: null  # no campaign column: put the campaign's id here (or pass --campaign-id)"]
        out += ["", "metadata:"]
        if self.phone_columns:
            out.append(f"  phone_columns: [{', '.join(q(h) for h in self.phone_columns)}]"
                       "  # their cells parse as phone numbers; sent in E.164")
        else:
            out.append("  phone_columns: []  # no column whose cells are phone numbers")
        out.append(f"  default_region: {q(self.default_region)}  # numbers written without +country")
        return "\n".join(out) + "\n"


def _quote(value: str) -> str:
    """A YAML scalar that reads back as exactly `value`: plain when it safely can be (`Email agent`), else
    a JSON string, which is valid YAML (`"Date d'appel"`, `";"`, `"true"`)."""
    if _PLAIN.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value, ensure_ascii=False)


def _delimiter_name(delimiter: str | None) -> str:
    return {",": "',' delimiter", ";": "';' delimiter", "\t": "tab delimiter"}.get(delimiter or ",", "?")
