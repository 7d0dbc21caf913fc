"""Which header is which field, by name: the English and French names exports give them, compared without
accents, case, punctuation or spacing, and with close spellings forgiven (rapidfuzz).

Used by `init` (to guess a config) and by the loader (to name the closest header when a required column is
missing). A guess is only ever a suggestion written into config.yaml or a message: the loader itself still
matches headers exactly (trimmed, ignoring case), so a run never depends on a fuzzy match.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from rapidfuzz import fuzz

# What exports call each field, already normalised (see `normalise`). French first where both exist.
NAMES: dict[str, tuple[str, ...]] = {
    "file_path": (
        "file path", "file", "filename", "file name", "path", "recording", "recording file", "recording path",
        "audio", "audio file", "audio path", "fichier", "nom du fichier", "nom de fichier", "chemin",
        "chemin du fichier", "chemin fichier", "enregistrement", "fichier audio", "lien enregistrement",
    ),
    "agent_email": (
        "agent email", "email agent", "agent e mail", "e mail agent", "mail agent", "agent mail",
        "courriel agent", "adresse email agent", "adresse mail agent", "email conseiller", "mail conseiller",
        "email de l agent", "email", "e mail", "user email", "agent email address",
    ),
    "agent_name": (
        "agent name", "agent", "name agent", "nom agent", "nom de l agent", "conseiller", "nom conseiller",
        "agent full name", "nom complet agent",
    ),
    "agent_first_name": (
        "agent first name", "first name agent", "first name", "prenom agent", "prenom", "prenom conseiller",
        "prenom de l agent",
    ),
    "agent_last_name": (
        "agent last name", "last name agent", "last name", "surname", "nom de famille agent",
        "nom de famille",
    ),
    "conversation_timestamp": (
        "conversation timestamp", "timestamp", "date", "datetime", "date time", "call date", "date of call",
        "call time", "call start", "start time", "started at", "call datetime", "date d appel",
        "date de l appel", "date appel", "horodatage", "date heure", "date et heure", "debut",
        "debut appel", "heure d appel", "date heure appel",
    ),
    "campaign_id": (
        "campaign id", "campaign", "campaign code", "campagne", "id campagne", "identifiant campagne",
        "code campagne", "campagne id",
    ),
}
# A French name is a strong hint that times are Paris time (said aloud by `init`).
FRENCH_WORDS = frozenset({
    "fichier", "chemin", "enregistrement", "courriel", "adresse", "conseiller", "nom", "prenom", "appel",
    "horodatage", "heure", "debut", "campagne", "identifiant", "telephone", "client", "duree", "famille",
    "numero", "n",
})
# "Nom agent" beside a "Prénom agent" column is the last name, not the full name.
LAST_NAME_WHEN_FIRST_NAME = frozenset({"nom agent", "nom", "nom conseiller", "nom de l agent", "name", "agent name"})
THRESHOLD = 85  # 0-100; below it a header is not offered as a field (close spellings score 86-95)


def normalise(header: str) -> str:
    """'  Date d’appel ' -> 'date d appel'; 'N° client' -> 'n client'; 'agent_email' -> 'agent email'."""
    text = "".join(c for c in unicodedata.normalize("NFKD", header) if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.casefold()).split())  # ’ and ° are spaces, not gone


def score(field: str, header: str) -> float:
    """How much `header` looks like `field` (0-100): its best ratio against the field's names."""
    norm = normalise(header)
    if not norm:
        return 0.0
    names = (normalise(field), *NAMES[field])
    return max(fuzz.ratio(norm, name) for name in names)


def match_headers(headers: Sequence[str], fields: Sequence[str] = tuple(NAMES)) -> dict[str, tuple[str, float]]:
    """field -> (header, score) for the fields some header matches, each header used once, the best
    pairs first (so 'Email agent' goes to agent_email even though 'agent' alone names agent_name)."""
    pairs = sorted(
        ((score(f, h), -fields.index(f), f, h) for f in fields for h in headers if h.strip()),
        reverse=True,
    )
    found: dict[str, tuple[str, float]] = {}
    used: set[str] = set()
    for value, _, field, header in pairs:
        if value < THRESHOLD or field in found or header in used:
            continue
        found[field] = (header, value)
        used.add(header)
    if "agent_first_name" in found and "agent_last_name" not in found and "agent_name" in found:
        header, value = found["agent_name"]
        if normalise(header) in LAST_NAME_WHEN_FIRST_NAME:
            found["agent_last_name"] = found.pop("agent_name")
    return found


def closest_header(field: str, headers: Sequence[str]) -> str | None:
    """The header most like `field`, when one is close enough to suggest."""
    return match_headers(headers).get(field, (None, 0.0))[0]


def is_french(headers: Sequence[str]) -> bool:
    """Whether the headers are written in French (a word no English export uses, or an accent)."""
    for header in headers:
        if any(unicodedata.combining(c) for c in unicodedata.normalize("NFKD", header)):
            return True
        if set(normalise(header).split()) & (FRENCH_WORDS - {"n", "client"}):
            return True
    return False
