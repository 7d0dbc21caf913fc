"""The guess wing: a config.yaml guessed from a manifest, for `allobrain-import init` and the web page.

In: a manifest path (CSV or XLSX). Out: a `Guess` — the column mapping (field -> header, from English and
French names, accents, case, spacing and close spellings), the encoding, delimiter, sheet and header row
found, phone columns, dayfirst and time zone, each with its reason — which words itself for people
(`lines()`) and as a commented config.yaml (`yaml_text()`).
"""

from __future__ import annotations

from .detect import guess_config
from .model import Guess

__all__ = ["Guess", "guess_config"]
