"""Header names to fields: English and French, accents, case, spacing, close spellings; and what must not match."""

from __future__ import annotations

import pytest

from importer.manifest import is_french, match_headers, normalise


def test_normalise_drops_accents_case_and_punctuation():
    assert normalise("  Date d’Appel ") == "date d appel"
    assert normalise("N° client") == "n client"
    assert normalise("TÉLÉPHONE_client") == "telephone client"
    assert normalise("agent_email") == "agent email"


@pytest.mark.parametrize(("header", "field"), [
    ("Fichier", "file_path"), ("file_path", "file_path"), ("Nom du fichier", "file_path"), ("Fichir", "file_path"),
    ("Email Agent", "agent_email"), ("E-mail agent", "agent_email"), ("Courriel agent", "agent_email"),
    ("Agent Emial", "agent_email"), ("AGENT_EMAIL", "agent_email"),
    ("Date d'appel", "conversation_timestamp"), ("Date de l’appel", "conversation_timestamp"),
    ("Horodatage", "conversation_timestamp"), ("Call Date", "conversation_timestamp"),
    ("Campagne", "campaign_id"), ("Campaign ID", "campaign_id"), ("Campaing", "campaign_id"),
])
def test_names_and_close_spellings_match_their_field(header, field):
    assert {f: h for f, (h, _) in match_headers([header]).items()} == {field: header}


@pytest.mark.parametrize("header", ["Email client", "Téléphone client", "N° client", "Durée", "Site", "Notes",
                                    "Client name"])
def test_other_columns_match_no_field(header):
    assert match_headers([header]) == {}


def test_each_header_goes_to_its_best_field_once():
    found = match_headers(["Prénom agent", "Nom agent", "Email agent", "Email client"])
    assert {f: h for f, (h, _) in found.items()} == {
        "agent_first_name": "Prénom agent", "agent_last_name": "Nom agent", "agent_email": "Email agent"}
    found = match_headers(["Nom agent", "Email"])
    assert {f: h for f, (h, _) in found.items()} == {"agent_name": "Nom agent", "agent_email": "Email"}


def test_french_headers_are_recognised():
    assert is_french(["Fichier", "Email"]) and is_french(["Téléphone"])
    assert not is_french(["file_path", "agent_email", "Customer Phone", "Client ID"])
